"""Statistics that let a study separate a direction from seed noise.

Sink_1 is a threshold statistic: at small scale a head's alpha_0 hovers near eps, so Sink_1
jumps between probes (docs/emergence.md). The verdicts therefore rest on two
robust summaries of the whole training curve, not on one final probe:

- **time to sink**: the first step at which Sink_1 exceeds 10 % and stays above it for the
  next probes as well (3 probes in all), in tokens; a run that never gets there counts as
  censored at its last probe (the time is "at least" that long);
- **first-token-mass AUC**: the area under the first-token-mass curve over tokens seen,
  divided by the tokens seen, so a time-average in [0, 1] that rewards an early sink.

Seeds are resampled with a percentile bootstrap (fixed generator seed, so a report is
reproducible): the 95 % interval of a mean, and of the difference of two settings' means.
A published direction is **reproduced** when the interval of the difference excludes 0 on
the published side, **contradicted** when it excludes 0 on the other side, and
**inconclusive** when it contains 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from sinklab.analysis import names

SINK_THRESHOLD_PCT = 10.0
PERSIST_PROBES = 3
N_BOOT = 10_000
BOOT_SEED = 0


def model_curve(rows: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The whole-model row of `metric` at every probed step: columns step, tokens_seen, value."""
    part = rows[(rows["metric"] == metric) & (rows["layer"] == -1) & (rows["head"] == -1)]
    part = part.drop_duplicates("step", keep="last").sort_values("step")
    return part[["step", "tokens_seen", "value"]].reset_index(drop=True)


def time_to_sink(
    rows: pd.DataFrame,
    threshold: float = SINK_THRESHOLD_PCT,
    persist: int = PERSIST_PROBES,
) -> tuple[float, bool]:
    """Tokens seen at the first probe from which Sink_1 > `threshold` for `persist` probes in
    a row; returns (tokens, reached). Not reached: the last probe's tokens, censored."""
    curve = model_curve(rows, names.SINK1)
    if curve.empty:
        return math.nan, False
    above = (curve["value"] > threshold).to_numpy()
    for i in range(len(above) - persist + 1):
        if above[i : i + persist].all():
            return float(curve["tokens_seen"].iloc[i]), True
    return float(curve["tokens_seen"].iloc[-1]), False


def first_token_mass_auc(rows: pd.DataFrame) -> float:
    """Time-averaged first-token mass: trapezoid area over tokens seen / tokens seen."""
    curve = model_curve(rows, names.FIRST_TOKEN_MASS)
    if len(curve) < 2:
        return math.nan
    x = curve["tokens_seen"].to_numpy(dtype=float)
    y = curve["value"].to_numpy(dtype=float)
    span = x[-1] - x[0]
    if span <= 0:
        return math.nan
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0) / span)


@dataclass(frozen=True)
class Interval:
    """A mean (or a difference of means) with its 95 % bootstrap interval."""

    mean: float
    low: float
    high: float
    n: int

    def text(self, digits: int = 3) -> str:
        if math.isnan(self.mean):
            return "-"
        if self.n < 2:
            return f"{self.mean:.{digits}g}"
        return f"{self.mean:.{digits}g} [{self.low:.{digits}g}, {self.high:.{digits}g}]"


def _clean(values: Sequence[float | None]) -> np.ndarray:
    arr = np.array([v for v in values if v is not None], dtype=float)
    return arr[~np.isnan(arr)]


def bootstrap_mean(values: Sequence[float | None], n_boot: int = N_BOOT) -> Interval:
    """Mean over seeds with the 2.5 / 97.5 percentiles of resampled means."""
    x = _clean(values)
    if len(x) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(BOOT_SEED)
    means = rng.choice(x, size=(n_boot, len(x)), replace=True).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return Interval(float(x.mean()), float(low), float(high), len(x))


def bootstrap_difference(
    values: Sequence[float | None], baseline: Sequence[float | None], n_boot: int = N_BOOT
) -> Interval:
    """mean(values) - mean(baseline), each resampled over its own seeds."""
    a, b = _clean(values), _clean(baseline)
    if len(a) == 0 or len(b) == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    rng = np.random.default_rng(BOOT_SEED)
    diffs = rng.choice(a, size=(n_boot, len(a))).mean(axis=1) - rng.choice(
        b, size=(n_boot, len(b))
    ).mean(axis=1)
    low, high = np.percentile(diffs, [2.5, 97.5])
    return Interval(float(a.mean() - b.mean()), float(low), float(high), min(len(a), len(b)))


def verdict(difference: Interval, expected_sign: int) -> str:
    """`reproduced`, `contradicted` or `inconclusive` for a published direction
    (`expected_sign` +1: the setting's value is larger than the baseline's; -1: smaller)."""
    if difference.n < 2 or math.isnan(difference.low):
        return "inconclusive"
    if difference.low > 0:
        return "reproduced" if expected_sign > 0 else "contradicted"
    if difference.high < 0:
        return "reproduced" if expected_sign < 0 else "contradicted"
    return "inconclusive"
