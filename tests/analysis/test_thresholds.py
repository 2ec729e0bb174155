"""The configured thresholds are really used, and the comparisons have the documented
strictness: Sink_k counts alpha > eps (strict), a head is dormant where its BOS attention is
>= dormant_threshold (not strict). Maps are built so values sit exactly on the threshold."""

from __future__ import annotations

import pandas as pd
import torch

from sinklab.analysis import MetricsConfig, measure, names
from tests.analysis.analysis_builders import probe_from_maps, sink_map

# Row 0 puts 1 on key 0, rows 1..3 put nothing there: alpha_0 = (1 + 0 + 0 + 0) / 4 = 0.25,
# exactly representable, so "> 0.25" and ">= 0.25" give different answers.
ALPHA0_QUARTER = torch.tensor(
    [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.5, 0.5, 0.0],
        [0.0, 0.25, 0.25, 0.5],
    ]
)
# Every query t >= 1 puts exactly 0.5 on BOS (key 0).
BOS_HALF = torch.tensor(
    [
        [1.0, 0.0, 0.0, 0.0],
        [0.5, 0.5, 0.0, 0.0],
        [0.5, 0.25, 0.25, 0.0],
        [0.5, 0.25, 0.125, 0.125],
    ]
)


def model_value(df: pd.DataFrame, metric: str) -> float:
    row = df[(df["metric"] == metric) & (df["layer"] == -1) & (df["head"] == -1)]
    assert len(row) == 1, f"expected one model row for {metric}"
    return float(row.value.iloc[0])


def sink1(attn: torch.Tensor, eps: float) -> float:
    return model_value(measure(probe_from_maps([attn]), cfg=MetricsConfig(eps=eps)), names.SINK1)


def test_sink1_is_strict_at_eps() -> None:
    assert sink1(ALPHA0_QUARTER, eps=0.25) == 0.0  # alpha_0 == eps does not count
    assert sink1(ALPHA0_QUARTER, eps=0.2499) == 100.0


def test_eps_moves_sink1_both_ways() -> None:
    """A sink of mass 0.6 on key 0: counted at eps 0.3, not at eps 0.9 (the README's
    `metrics={eps: ...}` override must change the number)."""
    attn = sink_map(16, 0, 0.6)
    assert sink1(attn, eps=0.3) == 100.0
    assert sink1(attn, eps=0.9) == 0.0


def test_sink_ratio_follows_eps() -> None:
    attn = sink_map(16, 0, 0.6)
    low = measure(probe_from_maps([attn]), cfg=MetricsConfig(eps=0.3))
    high = measure(probe_from_maps([attn]), cfg=MetricsConfig(eps=0.9))
    assert model_value(low, names.SINK_RATIO) == 100.0
    assert model_value(high, names.SINK_RATIO) == 0.0


def dormant_frac(attn: torch.Tensor, threshold: float) -> float:
    df = measure(
        probe_from_maps([attn]),
        cfg=MetricsConfig(dormant_threshold=threshold),
        bos_present=True,
    )
    return model_value(df, "dormancy/dormant_frac")


def test_dormancy_is_not_strict_at_the_threshold() -> None:
    assert dormant_frac(BOS_HALF, 0.5) == 1.0  # attention == threshold is dormant
    assert dormant_frac(BOS_HALF, 0.5001) == 0.0


def test_dormant_threshold_is_used() -> None:
    assert dormant_frac(BOS_HALF, 0.3) == 1.0
    assert dormant_frac(BOS_HALF, 0.7) == 0.0
