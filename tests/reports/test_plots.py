"""The cheap W&B attention image: layers side by side on one colour scale."""

from __future__ import annotations

import numpy as np

from sinklab.reports.plots import attention_maps_image


def test_attention_maps_image_tiles_layers_on_a_shared_scale() -> None:
    low, high = np.zeros((8, 8)), np.ones((8, 8))
    image = attention_maps_image([low, high], scale=2, gap=3)
    assert image.shape == (16, 16 + 3 + 16, 3) and image.dtype == np.uint8
    assert (image[:, 16:19] == 255).all(), "white gap between layers"
    # the same colour scale: the all-ones map is the colormap's top, the zeros its bottom
    assert not np.array_equal(image[0, 0], image[0, 19])
    assert np.array_equal(attention_maps_image([high * 0.5], scale=1)[0, 0], image[0, 19])
