"""`measure`'s row collector: layer and model means over the non-NaN heads (bit for bit the
numbers earlier tables hold), an all-NaN metric, a count mismatch, and the mean on a device
other than the CPU (the meta device stands in for an accelerator)."""

from __future__ import annotations

import math

import pytest
import torch

from sinklab.analysis.measure import _nanmean, _Rows

NAN = math.nan
# The mean of the finite entries, summed as torch sums the compacted tensor: 5.619999999999999.
# torch.nanmean sums in another order and gives 5.62, a different float64.
HEADS = [7.2, NAN, 9.0, NAN, NAN, 9.4, 2.2, 0.3, NAN]
FINITE = [7.2, 9.0, 9.4, 2.2, 0.3]


def test_layer_and_model_means_are_the_compacted_mean_bit_for_bit() -> None:
    want = float(torch.tensor(FINITE, dtype=torch.float64).mean())
    assert want != float(torch.nanmean(torch.tensor(HEADS, dtype=torch.float64)))
    rows = _Rows()
    rows.heads("m", 3, torch.tensor(HEADS, dtype=torch.float64))
    df = rows.frame()
    assert df[(df.layer == 3) & (df["head"] == -1)].value.item() == want
    assert df[(df.layer == -1) & (df["head"] == -1)].value.item() == want
    assert df[df.layer == 3]["head"].tolist() == [*range(9), -1]


def test_an_all_nan_metric_has_nan_means_one_row_each() -> None:
    rows = _Rows()
    rows.heads("m", 0, torch.tensor([NAN, NAN]))
    rows.layer("after", 0, torch.tensor(1.5))
    df = rows.frame()
    assert df["head"].tolist() == [0, 1, -1, -1, -1]
    assert df.metric.tolist() == ["m", "m", "m", "after", "m"]
    assert df.value.iloc[[0, 1, 2, 4]].isna().all()
    assert df.value.iloc[3] == 1.5


def test_nanmean_is_one_float64_value() -> None:
    for x in (torch.tensor([NAN, NAN]), torch.tensor([1.0, NAN, 2.0])):
        m = _nanmean(x)
        assert m.shape == (1,) and m.dtype == torch.float64
    assert math.isnan(float(_nanmean(torch.tensor([NAN]))))


def test_nanmean_off_the_cpu_stays_on_its_device() -> None:
    m = _nanmean(torch.empty(4, device="meta"))
    assert m.device.type == "meta" and m.shape == (1,) and m.dtype == torch.float64


def test_fewer_values_than_heads_is_an_error_not_a_short_table() -> None:
    rows = _Rows()
    rows.add(0, [0, 1, 2], "m", torch.tensor([1.0, 2.0]))
    with pytest.raises(ValueError):
        rows.frame()
