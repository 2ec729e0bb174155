"""Statistics that let a study separate a direction from seed noise.

Sink_1 is a threshold statistic: at small scale a head's alpha_0 hovers near eps, so Sink_1
jumps between probes (docs/emergence.md). The verdicts therefore rest on two
robust summaries of the whole training curve, not on one final probe:

- **time to sink**: the first step at which Sink_1 exceeds 10 % and stays above it for the
  next probes as well (3 probes in all), in tokens; a run that never gets there counts as
  censored at its last probe (the time is "at least" that long);
- **first-token-mass AUC**: the area under the first-token-mass curve over tokens seen,
  divided by the tokens seen, so a time-average in [0, 1] that rewards an early sink.

Intervals are Student-t, not bootstrap. A study has about five seeds, and at n = 5 a
percentile bootstrap is about 1.75 standard errors wide where the t-interval is 2.78
(t_{0.975, 4}): the bootstrap treats five values as the population, so its "95 %" interval
covers the true mean only 85-88 % of the time (tests/reports/test_evidence_coverage.py
measures both).

A difference of two settings is **seed-paired** when both sides name their seeds and share
at least two: runs with one seed share their initialisation and data order, so much of the
seed-to-seed spread cancels in the per-seed difference, and a paired t on those differences
is both valid and narrower. Only the shared seeds count (a seed that diverged on one side is
dropped on both). Without shared seeds the two sides are independent samples, and the
difference gets a Welch t with Welch-Satterthwaite degrees of freedom, which stays right
when the sides have different numbers of seeds or different spreads.

A published direction is **reproduced** when the difference is significant on the published
side, **contradicted** when significant on the other side, and **inconclusive** otherwise.
Many rows of a study share one baseline, so a study tests its directions together: the
caller adjusts the rows' p-values with `holm` (family-wise error, the default) or
`benjamini_hochberg` (false discovery rate) and passes the adjusted p to `verdict`;
without it, the verdict reads the unadjusted interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from sinklab.analysis import names

SINK_THRESHOLD_PCT = 10.0
PERSIST_PROBES = 3


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


def curve_auc(rows: pd.DataFrame, metric: str) -> float:
    """Time average of a whole-model metric over training: trapezoid area over tokens seen /
    tokens seen (nan with fewer than two probes). Rewards an early rise, not a late spike."""
    curve = model_curve(rows, metric)
    if len(curve) < 2:
        return math.nan
    x = curve["tokens_seen"].to_numpy(dtype=float)
    y = curve["value"].to_numpy(dtype=float)
    span = x[-1] - x[0]
    if span <= 0:
        return math.nan
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0) / span)


def first_token_mass_auc(rows: pd.DataFrame) -> float:
    """Time-averaged first-token mass (`curve_auc` of it): the verdicts' default statistic."""
    return curve_auc(rows, names.FIRST_TOKEN_MASS)


@dataclass(frozen=True)
class Interval:
    """A mean, or a difference of means, with its confidence interval.

    `p` is the two-sided p-value of "the mean is 0", meaningful for differences (nan for a
    plain mean); `method` names the test so a report can say which one it used."""

    mean: float
    low: float
    high: float
    n: int
    p: float = math.nan
    method: str = ""

    def text(self, digits: int = 3) -> str:
        if math.isnan(self.mean):
            return "-"
        if self.n < 2 or math.isnan(self.low):
            return f"{self.mean:.{digits}g}"
        return f"{self.mean:.{digits}g} [{self.low:.{digits}g}, {self.high:.{digits}g}]"


def _clean(values: Sequence[float | None]) -> np.ndarray:
    arr = np.array([v for v in values if v is not None], dtype=float)
    return arr[~np.isnan(arr)]


def _t_interval(
    mean: float, se: float, df: float, n: int, level: float, method: str, with_p: bool
) -> Interval:
    """mean +- t_{(1+level)/2, df} * se, and the two-sided p of mean == 0 when `with_p`.

    Zero spread (every value equal) gives a point interval; its p is 0 for a non-zero mean
    (no seed noise at all to explain it) and 1 for a zero mean."""
    if se == 0.0:
        p = (0.0 if mean != 0.0 else 1.0) if with_p else math.nan
        return Interval(mean, mean, mean, n, p, method)
    # special.stdtrit / stdtr are the t quantile and CDF behind scipy.stats.t.ppf / cdf,
    # without its ~100 us of argument handling per call (the coverage test makes 10,000).
    half = float(special.stdtrit(df, (1.0 + level) / 2.0)) * se
    p = float(2.0 * special.stdtr(df, -abs(mean) / se)) if with_p else math.nan
    return Interval(mean, mean - half, mean + half, n, p, method)


def mean_interval(values: Sequence[float | None], level: float = 0.95) -> Interval:
    """Mean over seeds with its Student-t interval (n - 1 df); None and NaN are dropped."""
    x = _clean(values)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, math.nan, "t")
    mean = float(x.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, math.nan, "t")
    se = float(x.std(ddof=1)) / math.sqrt(n)
    return _t_interval(mean, se, n - 1, n, level, "t", with_p=False)


def _by_seed(values: Sequence[float | None], seeds: Sequence[int], side: str) -> dict[int, float]:
    """Finite values keyed by seed; a seed named twice on one side has no single pairing."""
    if len(values) != len(seeds):
        raise ValueError(
            f"{side}: {len(values)} values but {len(seeds)} seeds; give one seed per value"
        )
    if len(set(seeds)) != len(seeds):
        twice = next(s for s in seeds if list(seeds).count(s) > 1)
        raise ValueError(f"{side}: seed {twice} appears twice; give each run its own seed")
    return {
        seed: float(value)
        for value, seed in zip(values, seeds, strict=True)
        if value is not None and not math.isnan(float(value))
    }


def _paired(a: dict[int, float], b: dict[int, float], level: float) -> Interval | None:
    """Paired t over the seeds both sides have, or None when fewer than two are shared."""
    shared = sorted(set(a) & set(b))
    if len(shared) < 2:
        return None
    d = np.array([a[s] - b[s] for s in shared])
    n = len(d)
    se = float(d.std(ddof=1)) / math.sqrt(n)
    return _t_interval(float(d.mean()), se, n - 1, n, level, "paired t", with_p=True)


def _welch(a: np.ndarray, b: np.ndarray, level: float) -> Interval:
    """Welch t for two independent samples of any sizes (Welch-Satterthwaite df)."""
    n = min(len(a), len(b))
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, math.nan, "Welch t")
    mean = float(a.mean() - b.mean())
    if n < 2:
        return Interval(mean, math.nan, math.nan, n, math.nan, "Welch t")
    va, vb = float(a.var(ddof=1)) / len(a), float(b.var(ddof=1)) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se > 0 else 1.0
    return _t_interval(mean, se, df, n, level, "Welch t", with_p=True)


def difference_interval(
    values: Sequence[float | None],
    baseline: Sequence[float | None],
    *,
    seeds: Sequence[int] | None = None,
    baseline_seeds: Sequence[int] | None = None,
    level: float = 0.95,
) -> Interval:
    """mean(values) - mean(baseline) with its t interval and p-value.

    Seed-paired (method "paired t", n = pairs) when both seed lists are given and the sides
    share at least two seeds with finite values; otherwise Welch (method "Welch t",
    n = the smaller side). None and NaN values are dropped first."""
    if seeds is not None and baseline_seeds is not None:
        paired = _paired(
            _by_seed(values, seeds, "values"),
            _by_seed(baseline, baseline_seeds, "baseline"),
            level,
        )
        if paired is not None:
            return paired
    return _welch(_clean(values), _clean(baseline), level)


def _adjust(pvalues: Sequence[float], step_down: bool) -> list[float]:
    """Holm (step-down) or Benjamini-Hochberg (step-up) over the non-nan p-values."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(len(p), math.nan)
    idx = np.flatnonzero(~np.isnan(p))
    m = len(idx)
    if m == 0:
        return out.tolist()
    order = idx[np.argsort(p[idx], kind="stable")]
    ranked = p[order]
    rank = np.arange(1, m + 1)
    if step_down:
        adjusted = np.maximum.accumulate(np.minimum(1.0, (m - rank + 1) * ranked))
    else:
        adjusted = np.minimum.accumulate(np.minimum(1.0, m / rank * ranked)[::-1])[::-1]
    out[order] = adjusted
    return out.tolist()


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in input order: the family-wise error over a
    study's rows stays at alpha. NaN (an untested row) stays NaN and does not count in m."""
    return _adjust(pvalues, step_down=True)


def benjamini_hochberg(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in input order;
    NaN stays NaN and does not count in m."""
    return _adjust(pvalues, step_down=False)


def verdict(
    difference: Interval, expected_sign: int, p: float | None = None, alpha: float = 0.05
) -> str:
    """`reproduced`, `contradicted` or `inconclusive` for a published direction
    (`expected_sign` +1: the setting's value is larger than the baseline's; -1: smaller).

    With `p` (the row's adjusted p-value) the row is significant when p < alpha and the sign
    of the mean difference decides; without it, the interval must exclude 0."""
    if difference.n < 2 or math.isnan(difference.mean):
        return "inconclusive"
    if p is not None:
        if math.isnan(p) or p >= alpha or difference.mean == 0:
            return "inconclusive"
        agrees = (difference.mean > 0) == (expected_sign > 0)
        return "reproduced" if agrees else "contradicted"
    if math.isnan(difference.low):
        return "inconclusive"
    if difference.low > 0:
        return "reproduced" if expected_sign > 0 else "contradicted"
    if difference.high < 0:
        return "reproduced" if expected_sign < 0 else "contradicted"
    return "inconclusive"
