"""Figures shared by the probe callback (W&B images) and the reanalysis scripts (PNG files).

Matplotlib runs headless (Agg); every function returns a Figure so callers decide where it goes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def head_averaged_patterns(probe: Any) -> list[np.ndarray]:
    """Per layer, the attention pattern averaged over windows and heads ([T, E + T])."""
    maps = []
    for layer in range(probe.n_layers):
        name = f"blocks.{layer}.attn.pattern"
        if name in probe:
            maps.append(probe[name].float().mean(dim=(0, 1)).cpu().numpy())
    return maps


def attention_maps_figure(maps: Sequence[np.ndarray], title: str = "", max_cols: int = 4) -> plt.Figure:
    """One heatmap per layer (query rows, key columns), on a shared colour scale."""
    n = max(1, len(maps))
    cols = min(max_cols, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    vmax = max((float(m.max()) for m in maps), default=1.0)
    for i, ax in enumerate(axes.flat):
        if i >= len(maps):
            ax.axis("off")
            continue
        im = ax.imshow(maps[i], cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto", interpolation="nearest")
        ax.set_title(f"layer {i}", fontsize=9)
        ax.set_xlabel("key", fontsize=8)
        ax.set_ylabel("query", fontsize=8)
        ax.tick_params(labelsize=7)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    if title:
        fig.suptitle(title)
    return fig


def activation_profile_figure(rows: pd.DataFrame, title: str = "") -> plt.Figure:
    """Sun et al.'s picture: top-1/2/3 and median |h| per layer, log scale."""
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for metric, style in (("top1_abs", "o-"), ("top2_abs", "s-"), ("top3_abs", "^-"), ("median_abs", "x--")):
        part = rows[(rows["metric"] == f"massive/{metric}") & (rows["head"] == -1)].sort_values("layer")
        if len(part):
            ax.plot(part["layer"], part["value"], style, label=metric.replace("_abs", ""))
    ax.set_yscale("log")
    ax.set_xlabel("layer")
    ax.set_ylabel("|activation|")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def figure_to_image(fig: plt.Figure) -> Any:
    """Render to a PIL image (what wandb.Image takes) and free the figure."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
