"""Coverage of the study intervals on simulated seeds with a known truth (issue #31).

2,000 simulated studies of n = 5 seeds each, from one fixed generator: a 95 % interval
should contain the true value in about 95 % of them. With 2,000 draws the binomial standard
error is 0.5 points, so 93-97 % is four standard errors either way. The old percentile
bootstrap is run on the same draws to show why it was replaced.
"""

from __future__ import annotations

import numpy as np

from sinklab.reports import evidence

DRAWS = 2000
SEEDS = 5
TRUE_MEAN = 1.3
TRUE_DIFFERENCE = 0.7


def percentile_bootstrap(values: np.ndarray, n_boot: int = 2000) -> evidence.Interval:
    """The interval the studies used until issue 31: 2.5 / 97.5 percentiles of resampled
    means (kept here only to show why it was replaced)."""
    means = np.random.default_rng(0).choice(values, size=(n_boot, len(values))).mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return evidence.Interval(float(values.mean()), float(low), float(high), len(values))


def coverage(intervals: list[evidence.Interval], truth: float) -> float:
    return float(np.mean([ci.low <= truth <= ci.high for ci in intervals]))


def test_mean_interval_covers_95_percent_and_the_bootstrap_does_not() -> None:
    samples = np.random.default_rng(31).normal(TRUE_MEAN, 2.0, size=(DRAWS, SEEDS))
    t_cover = coverage([evidence.mean_interval(list(x)) for x in samples], TRUE_MEAN)
    assert 0.93 <= t_cover <= 0.97
    boot_cover = coverage([percentile_bootstrap(x) for x in samples], TRUE_MEAN)
    assert boot_cover <= 0.91


def test_welch_difference_covers_95_percent() -> None:
    rng = np.random.default_rng(32)
    setting = rng.normal(1.0 + TRUE_DIFFERENCE, 1.0, size=(DRAWS, SEEDS))
    baseline = rng.normal(1.0, 1.0, size=(DRAWS, SEEDS))
    intervals = [
        evidence.difference_interval(list(a), list(b))
        for a, b in zip(setting, baseline, strict=True)
    ]
    assert {ci.method for ci in intervals} == {"Welch t"}
    assert 0.93 <= coverage(intervals, TRUE_DIFFERENCE) <= 0.97


def test_welch_difference_covers_95_percent_with_unequal_seeds_and_spread() -> None:
    """A baseline that lost a seed and is three times as noisy: the case of issue #32."""
    rng = np.random.default_rng(33)
    setting = rng.normal(1.0 + TRUE_DIFFERENCE, 1.0, size=(DRAWS, SEEDS))
    baseline = rng.normal(1.0, 3.0, size=(DRAWS, SEEDS - 1))
    intervals = [
        evidence.difference_interval(list(a), list(b))
        for a, b in zip(setting, baseline, strict=True)
    ]
    assert 0.93 <= coverage(intervals, TRUE_DIFFERENCE) <= 0.97


def test_paired_difference_covers_95_percent() -> None:
    rng = np.random.default_rng(34)
    seed_effect = rng.normal(0.0, 2.0, size=(DRAWS, SEEDS))  # shared init and data order
    setting = seed_effect + TRUE_DIFFERENCE + rng.normal(0.0, 0.5, size=(DRAWS, SEEDS))
    baseline = seed_effect + rng.normal(0.0, 0.5, size=(DRAWS, SEEDS))
    seeds = list(range(SEEDS))
    intervals = [
        evidence.difference_interval(list(a), list(b), seeds=seeds, baseline_seeds=seeds[::-1])
        for a, b in zip(setting, baseline[:, ::-1], strict=True)
    ]
    assert {ci.method for ci in intervals} == {"paired t"}
    assert 0.93 <= coverage(intervals, TRUE_DIFFERENCE) <= 0.97
