"""Pyramidal funnelling: the half-vs-half rule on hand-built layer profiles whose verdicts are
known, and the figures drawn from them."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from sinklab.reports import funnelling
from sinklab.reports.funnelling import ENTROPY, TOP_MASS, funnel, halves, layer_values


def _rows(entropy: list[float], mass: list[float], step: int = 10) -> pd.DataFrame:
    """Layer rows (head -1) of both metrics at one step, plus per-head and model rows that
    the rule must ignore."""
    records = []
    for layer, (e, m) in enumerate(zip(entropy, mass, strict=True)):
        base = dict(step=step, tokens_seen=100 * step, layer=layer)
        records += [
            dict(base, head=-1, metric=ENTROPY, value=e),
            dict(base, head=-1, metric=TOP_MASS, value=m),
            dict(base, head=0, metric=ENTROPY, value=99.0),  # a head row: not the layer's
        ]
    records.append(
        dict(step=step, tokens_seen=100 * step, layer=-1, head=-1, metric=ENTROPY, value=-5.0)
    )
    return pd.DataFrame(records)


def test_halves_split_even_and_odd_layer_counts() -> None:
    assert halves(pd.Series([1.0, 3.0])) == (1.0, 3.0)
    assert halves(pd.Series([1.0, 2.0, 4.0, 8.0])) == (1.5, 6.0)
    # the middle layer of five belongs to neither half
    assert halves(pd.Series([1.0, 2.0, 100.0, 4.0, 8.0])) == (1.5, 6.0)
    low, up = halves(pd.Series([1.0]))
    assert math.isnan(low) and math.isnan(up)


@pytest.mark.parametrize(
    ("entropy", "mass", "verdict"),
    [
        ([0.9, 0.8, 0.5, 0.4], [0.2, 0.3, 0.6, 0.7], "funnels"),
        ([0.4, 0.5, 0.8, 0.9], [0.7, 0.6, 0.3, 0.2], "widens"),
        ([0.9, 0.8, 0.5, 0.4], [0.7, 0.6, 0.3, 0.2], "mixed"),  # focuses but spreads its mass
        ([0.5, 0.5], [0.3, 0.3], "widens"),  # no change is not funnelling
    ],
)
def test_verdict_of_the_rule(entropy: list[float], mass: list[float], verdict: str) -> None:
    f = funnel(_rows(entropy, mass))
    assert f.verdict == verdict
    assert f.entropy_lower == pytest.approx(sum(entropy[: len(entropy) // 2]) / (len(entropy) // 2))


def test_layer_values_read_the_last_step_unless_told() -> None:
    rows = pd.concat([_rows([0.9, 0.1], [0.1, 0.9], step=5), _rows([0.1, 0.9], [0.9, 0.1], step=7)])
    assert layer_values(rows, ENTROPY).tolist() == [0.1, 0.9]
    assert layer_values(rows, ENTROPY, step=5).tolist() == [0.9, 0.1]
    assert funnel(rows).verdict == "widens"
    assert funnel(rows, step=5).verdict == "funnels"


def test_seeds_at_one_step_are_averaged() -> None:
    rows = pd.concat([_rows([0.9, 0.3], [0.1, 0.5]), _rows([0.7, 0.5], [0.3, 0.7])])
    assert layer_values(rows, ENTROPY).tolist() == pytest.approx([0.8, 0.4])
    assert layer_values(rows, TOP_MASS).tolist() == pytest.approx([0.2, 0.6])


def test_a_one_layer_model_has_no_verdict() -> None:
    assert funnel(_rows([0.5], [0.5])).verdict == "-"


def test_figures_draw_one_line_per_model_and_per_layer(tmp_path: Path) -> None:
    a = _rows([0.9, 0.8, 0.5, 0.4], [0.2, 0.3, 0.6, 0.7])
    b = _rows([0.9, 0.2], [0.1, 0.9])
    fig = funnelling.funnel_by_layer_figure({"four": a, "two": b})
    entropy_ax = fig.axes[0]
    assert [line.get_label() for line in entropy_ax.lines] == ["four", "two"]
    x, y = entropy_ax.lines[0].get_data()
    assert list(x) == pytest.approx([0.0, 1 / 3, 2 / 3, 1.0])  # relative depth
    assert list(y) == pytest.approx([0.9, 0.8, 0.5, 0.4])

    over = pd.concat([_rows([1.0, 1.0], [0.3, 0.3], step=0), b])
    fig = funnelling.funnel_over_training_figure({"setting": [over]})
    assert len(fig.axes) == 2
    assert [line.get_label() for line in fig.axes[0].lines] == ["layer 0", "layer 1"]
    assert list(fig.axes[1].lines[1].get_data()[1]) == pytest.approx([0.3, 0.9])
