"""Robust study statistics and verdicts, on hand-built curves with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf
from scipy import stats

from sinklab.analysis import names
from sinklab.reports import evidence
from sinklab.reports.studies import study_report


def curve_rows(metric: str, values: list[float], tokens_per_step: int = 100) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "step": list(range(len(values))),
            "tokens_seen": [s * tokens_per_step for s in range(len(values))],
            "layer": -1,
            "head": -1,
            "metric": metric,
            "value": values,
        }
    )


def test_time_to_sink_needs_three_probes_in_a_row() -> None:
    rows = curve_rows(names.SINK1, [0, 15, 5, 12, 20, 30])
    assert evidence.time_to_sink(rows) == (300.0, True)  # 15 alone does not last


def test_time_to_sink_is_censored_when_never_reached() -> None:
    rows = curve_rows(names.SINK1, [0, 15, 5, 12, 20, 5])
    assert evidence.time_to_sink(rows) == (500.0, False)


def test_time_to_sink_threshold_is_strict() -> None:
    rows = curve_rows(names.SINK1, [0, 10, 10, 10])
    assert evidence.time_to_sink(rows) == (300.0, False)


def test_first_token_mass_auc_is_a_trapezoid_time_average() -> None:
    rows = pd.DataFrame(
        {
            "step": [0, 1, 3],
            "tokens_seen": [0, 100, 300],
            "layer": -1,
            "head": -1,
            "metric": names.FIRST_TOKEN_MASS,
            "value": [0.0, 1.0, 1.0],
        }
    )
    # (100 * (0 + 1) / 2 + 200 * (1 + 1) / 2) / 300
    assert evidence.first_token_mass_auc(rows) == pytest.approx(250 / 300)


def test_verdicts() -> None:
    apart = evidence.difference_interval([5, 6, 7, 5, 6], [1, 2, 1, 2, 1])
    assert apart.low > 0
    assert evidence.verdict(apart, +1) == "reproduced"
    assert evidence.verdict(apart, -1) == "contradicted"
    overlap = evidence.difference_interval([1, 5, 3], [2, 4, 3])
    assert overlap.low < 0 < overlap.high
    assert evidence.verdict(overlap, +1) == "inconclusive"
    one_seed = evidence.difference_interval([9.0], [1.0])
    assert evidence.verdict(one_seed, +1) == "inconclusive"  # one seed decides nothing


T_975_4 = 2.7764451051977987  # t_{0.975} with 4 degrees of freedom, from a table


def test_mean_interval_is_student_t_with_n_minus_1_df() -> None:
    ci = evidence.mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])
    half = T_975_4 * math.sqrt(2.5) / math.sqrt(5)  # sd of 1..5 is sqrt(2.5)
    assert (ci.mean, ci.n, ci.method) == (3.0, 5, "t")
    assert ci.low == pytest.approx(3.0 - half, rel=1e-12)
    assert ci.high == pytest.approx(3.0 + half, rel=1e-12)
    assert math.isnan(ci.p)  # a plain mean tests nothing
    assert ci.text() == "3 [1.04, 4.96]"


def test_mean_interval_level_changes_the_quantile() -> None:
    ci = evidence.mean_interval([1.0, 2.0, 3.0, 4.0, 5.0], level=0.90)
    assert ci.high - 3.0 == pytest.approx(2.131846786326649 * math.sqrt(0.5), rel=1e-12)


def test_mean_interval_edge_cases() -> None:
    one = evidence.mean_interval([None, 4.0, math.nan])
    assert (one.mean, one.n) == (4.0, 1) and math.isnan(one.low) and math.isnan(one.high)
    assert one.text() == "4"
    empty = evidence.mean_interval([None, math.nan])
    assert empty.n == 0 and empty.text() == "-"
    flat = evidence.mean_interval([2.5, 2.5, 2.5])
    assert (flat.low, flat.mean, flat.high) == (2.5, 2.5, 2.5)
    dropped = evidence.mean_interval([1.0, None, 2.0, math.nan, 3.0, 4.0, 5.0])
    assert dropped == evidence.mean_interval([1.0, 2.0, 3.0, 4.0, 5.0])


def welch_by_hand(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Mean difference, Welch-Satterthwaite df and half-width, written out."""
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = stats.t.ppf(0.975, df) * np.sqrt(va + vb)
    return float(a.mean() - b.mean()), float(df), float(half)


def test_welch_on_unequal_seed_counts_matches_the_formula() -> None:
    a = np.array([5.1, 6.3, 4.8, 7.0, 5.9])
    b = np.array([4.0, 4.4, 3.1, 5.2])
    mean, df, half = welch_by_hand(a, b)
    assert df == pytest.approx(6.6352, abs=1e-4)  # 0.1594 and 0.190625 as the two SE^2
    ci = evidence.difference_interval(list(a), list(b))
    assert (ci.n, ci.method) == (4, "Welch t")
    assert ci.mean == pytest.approx(1.645, rel=1e-12)
    assert (ci.low, ci.high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    t_stat = mean / math.sqrt(0.1594 + 0.190625)
    assert ci.p == pytest.approx(2 * stats.t.sf(t_stat, df), rel=1e-9)
    # a NaN (a diverged seed) is dropped, not counted as a seed
    assert evidence.difference_interval([*a, math.nan], [*b, None]) == ci


def test_welch_keeps_inconclusive_where_an_equal_n_formula_claims_reproduced() -> None:
    """Issue #32: the baseline lost seeds (3 left of 5) and is spread out. Treating it as if
    it had the setting's 5 seeds shrinks the interval off 0 and reports 'reproduced'."""
    a = np.array([2.0, 2.1, 1.9, 2.05, 1.95])
    b = np.array([0.0, 2.0, 0.5])
    diff = a.mean() - b.mean()
    naive_half = stats.t.ppf(0.975, 8) * math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 5)
    naive = evidence.Interval(diff, diff - naive_half, diff + naive_half, 5)
    assert evidence.verdict(naive, +1) == "reproduced"
    ci = evidence.difference_interval(list(a), list(b))
    _, _, half = welch_by_hand(a, b)
    assert ci.high - ci.mean == pytest.approx(half)
    assert ci.low < 0 < ci.high and ci.p > 0.05
    assert evidence.verdict(ci, +1) == "inconclusive"


def test_paired_difference_matches_seeds_not_positions() -> None:
    setting = {0: 3.1, 1: 5.9, 2: 2.0, 3: 8.2, 4: 4.8}
    baseline = {0: 2.0, 1: 5.0, 2: 1.0, 3: 7.0, 4: 4.0}  # differences 1.1 .9 1 1.2 .8
    ci = evidence.difference_interval(
        list(setting.values()),
        [baseline[s] for s in (4, 2, 0, 3, 1)],
        seeds=list(setting),
        baseline_seeds=[4, 2, 0, 3, 1],
    )
    half = T_975_4 * math.sqrt(0.1 / 4) / math.sqrt(5)
    assert (ci.n, ci.method) == (5, "paired t")
    assert ci.mean == pytest.approx(1.0)
    assert (ci.low, ci.high) == (pytest.approx(1.0 - half), pytest.approx(1.0 + half))
    assert ci.p == pytest.approx(2 * stats.t.sf(1.0 / (math.sqrt(0.025) / math.sqrt(5)), 4))


def test_paired_difference_drops_a_seed_missing_on_either_side() -> None:
    full = evidence.difference_interval(
        [3.1, 5.9, 2.0, 8.2], [2.0, 5.0, 1.0, 7.0], seeds=[0, 1, 2, 3], baseline_seeds=[0, 1, 2, 3]
    )
    diverged = evidence.difference_interval(
        [3.1, 5.9, 2.0, 8.2, 99.0],
        [2.0, 5.0, 1.0, 7.0, math.nan],  # seed 9 diverged in the baseline
        seeds=[0, 1, 2, 3, 9],
        baseline_seeds=[0, 1, 2, 3, 9],
    )
    absent = evidence.difference_interval(
        [3.1, 5.9, 2.0, 8.2, 99.0],
        [2.0, 5.0, 1.0, 7.0, -50.0],  # seeds 9 and 7 each exist on one side only
        seeds=[0, 1, 2, 3, 9],
        baseline_seeds=[0, 1, 2, 3, 7],
    )
    assert full.method == "paired t" and full.n == 4
    assert diverged == full and absent == full


def test_fewer_than_two_shared_seeds_falls_back_to_welch() -> None:
    ci = evidence.difference_interval(
        [1.0, 2.0, 3.0], [0.0, 0.5, 1.5], seeds=[0, 1, 2], baseline_seeds=[2, 5, 6]
    )
    assert ci == evidence.difference_interval([1.0, 2.0, 3.0], [0.0, 0.5, 1.5])
    assert ci.method == "Welch t"


def test_paired_is_narrower_than_welch_when_seeds_correlate() -> None:
    seed_effect = np.array([0.0, 4.0, -3.0, 2.0, -1.0])  # init/data order dominates
    setting = seed_effect + 1.0 + np.array([0.1, -0.1, 0.05, 0.0, -0.05])
    baseline = seed_effect + np.array([0.0, 0.05, -0.1, 0.1, 0.0])
    seeds = [0, 1, 2, 3, 4]
    paired = evidence.difference_interval(
        list(setting), list(baseline), seeds=seeds, baseline_seeds=seeds
    )
    welch = evidence.difference_interval(list(setting), list(baseline))
    assert paired.mean == pytest.approx(welch.mean)
    assert paired.high - paired.low < (welch.high - welch.low) / 10
    assert evidence.verdict(paired, +1) == "reproduced"
    assert evidence.verdict(welch, +1) == "inconclusive"


def test_zero_spread_differences_are_exact() -> None:
    same = evidence.difference_interval([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])
    assert (same.low, same.mean, same.high, same.p) == (1.0, 1.0, 1.0, 0.0)
    tie = evidence.difference_interval([1.0, 3.0], [1.0, 3.0], seeds=[0, 1], baseline_seeds=[0, 1])
    assert (tie.low, tie.mean, tie.high, tie.p, tie.method) == (0.0, 0.0, 0.0, 1.0, "paired t")
    assert evidence.verdict(tie, +1, p=tie.p) == "inconclusive"


def test_seed_lists_must_name_each_value_once() -> None:
    with pytest.raises(ValueError, match="^baseline: seed 1 appears twice; give each run"):
        evidence.difference_interval([1, 2], [1, 2], seeds=[0, 1], baseline_seeds=[1, 1])
    with pytest.raises(ValueError, match="^values: 2 values but 3 seeds; give one seed per"):
        evidence.difference_interval([1, 2], [1, 2], seeds=[0, 1, 2], baseline_seeds=[0, 1])


def test_holm_by_hand() -> None:
    # sorted 0.005 0.01 0.03 0.04 -> x4 x3 x2 x1 = 0.02 0.03 0.06 0.04 -> running max
    assert evidence.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # m counts the tested rows only: 0.3 x3 = 0.9, 0.6 x2 = 1.2 capped at 1
    adjusted = evidence.holm([0.8, 0.6, math.nan, 0.3])
    assert adjusted[0] == 1.0 and adjusted[1] == 1.0 and adjusted[3] == pytest.approx(0.9)
    assert math.isnan(adjusted[2])
    assert evidence.holm([]) == []


def test_benjamini_hochberg_by_hand() -> None:
    # sorted 0.005 0.01 0.03 0.04 -> x4/1 x4/2 x4/3 x4/4 = 0.02 0.02 0.04 0.04
    assert evidence.benjamini_hochberg([0.01, 0.04, 0.03, 0.005]) == pytest.approx(
        [0.02, 0.04, 0.04, 0.02]
    )
    # step-up: 0.04 x4 = 0.16 is lowered to the next rank's 0.05 x4/3
    adjusted = evidence.benjamini_hochberg([0.04, 0.045, 0.05, math.nan, 0.9])
    assert adjusted[:3] == pytest.approx([0.2 / 3] * 3)
    assert math.isnan(adjusted[3]) and adjusted[4] == pytest.approx(0.9)
    assert evidence.benjamini_hochberg([0.9, 0.95]) == pytest.approx([0.95, 0.95])


def test_verdict_with_an_adjusted_p() -> None:
    row = evidence.Interval(0.5, 0.04, 0.96, 5, p=0.03, method="paired t")
    assert evidence.verdict(row, +1) == "reproduced"  # raw interval excludes 0
    assert evidence.verdict(row, +1, p=row.p) == "reproduced"
    assert evidence.verdict(row, -1, p=row.p) == "contradicted"
    adjusted = evidence.holm([row.p, 0.04, 0.2])
    assert adjusted[0] == pytest.approx(0.09)
    assert evidence.verdict(row, +1, p=adjusted[0]) == "inconclusive"
    assert evidence.verdict(row, +1, p=math.nan) == "inconclusive"
    assert evidence.verdict(row, +1, p=0.09, alpha=0.1) == "reproduced"
    lone = evidence.Interval(0.5, math.nan, math.nan, 1, p=0.001)
    assert evidence.verdict(lone, +1, p=0.001) == "inconclusive"


def test_raw_p_and_interval_give_the_same_verdict() -> None:
    for setting in ([5, 6, 7, 5, 6], [1, 5, 3, 2, 2], [1.5, 1.4, 0.9, 1.2]):
        ci = evidence.difference_interval(setting, [1, 2, 1, 2, 1])
        assert evidence.verdict(ci, +1) == evidence.verdict(ci, +1, p=ci.p)


def write_job(folder: Path, seed: int, override: str, rows: pd.DataFrame) -> None:
    """A finished study job as Hydra and the callback lay it out."""
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(
        OmegaConf.create([f"seed={seed}", override]), folder / ".hydra" / "overrides.yaml"
    )
    OmegaConf.save(OmegaConf.create({"seed": seed}), folder / ".hydra" / "config.yaml")
    (folder / "probe").mkdir()
    (folder / "probe" / "probe_set.npz").write_bytes(b"")
    (folder / "metrics").mkdir()
    rows.to_parquet(folder / "metrics" / "probes.parquet")
    (folder / "summary.json").write_text(json.dumps({"final_val_loss": 1.0}))


def make_job(folder: Path, wd: str, seed: int, ftm: list[float]) -> None:
    rows = pd.concat(
        [curve_rows(names.FIRST_TOKEN_MASS, ftm), curve_rows(names.SINK1, [100 * v for v in ftm])]
    )
    write_job(folder, seed, f"optim.weight_decay={wd}", rows)


def test_study_report_gives_each_published_direction_a_verdict(tmp_path: Path) -> None:
    study = tmp_path / "weight_decay_sweep"
    study.mkdir()
    params = {"seed": "0,1,2", "optim.weight_decay": "0.1,0.5,2.0"}
    OmegaConf.save(
        OmegaConf.create({"hydra": {"sweeper": {"params": params}}}), study / "multirun.yaml"
    )
    job = 0
    for seed in range(3):
        for wd, level in (("0.1", 0.3), ("0.5", 0.6), ("2.0", 0.3)):
            jitter = 0.01 * seed
            make_job(study / str(job), wd, seed, [0.05, level + jitter, level + jitter, level])
            job += 1
    body = study_report(study, tmp_path / "docs")
    lines = {  # keyed by the comparison cell, wherever the table puts it
        cell: line for line in body.splitlines() for cell in line.split(" | ") if " vs " in cell
    }
    assert "reproduced" in lines["weight_decay=0.5 vs weight_decay=0.1"]
    assert "inconclusive" in lines["weight_decay=2.0 vs weight_decay=0.1"]
    assert "| weight_decay=0.5 | 3 |" in body  # the robust table counts seeds per setting


def test_streaming_study_judges_the_bos_eviction_cost_and_calls_r_win_untestable(
    tmp_path: Path,
) -> None:
    """Softmax pays x3 for evicting BOS (PPL window 6 against 2 with BOS kept), kv_bias x1:
    'needs no first token' is reproduced on bos_eviction_cost, while the R_win row, whose
    oracle has lost BOS too, is untestable here whatever its numbers."""
    study = tmp_path / "streaming_sweep"
    study.mkdir()
    params = {"seed": "0,1,2", "variant": "softmax,kv_bias"}
    OmegaConf.save(
        OmegaConf.create({"hydra": {"sweeper": {"params": params}}}), study / "multirun.yaml"
    )
    job = 0
    for seed in range(3):
        for variant, cost in (("softmax", 3.0), ("kv_bias", 1.0)):
            window = 2.0 * (cost + 0.1 * seed)
            rows = pd.concat(
                [
                    curve_rows(names.FIRST_TOKEN_MASS, [0.05, 0.3]),
                    curve_rows("stream/ratio/window_shift", [1.0, cost + 0.1 * seed]),
                    curve_rows("stream/ppl/window_shift", [9.0, window]),
                    curve_rows("stream/ppl/sinks1_shift", [9.0, 2.0]),
                ]
            )
            write_job(study / str(job), seed, f"variant={variant}", rows)
            job += 1
    body = study_report(study, tmp_path / "docs")
    assert "R_win shift" in body
    rows = [line for line in body.splitlines() if "variant=kv_bias vs" in line]
    (cost_row,) = [line for line in rows if "| bos_eviction_cost |" in line]
    (r_win_row,) = [line for line in rows if "| r_win |" in line]
    assert cost_row.rstrip(" |").endswith("| reproduced")
    assert "| -2 [" in cost_row  # 1.1 - 3.1 on every seed
    assert "untestable here: R_win is the window's PPL over the recompute oracle's" in r_win_row
    assert "| PPL(window) / PPL(BOS + recent) |" in body
    assert "1 tested comparison in this section" in body
    assert (
        tmp_path / "docs" / "figures" / "streaming_sweep_stream_ratio_window_shift.png"
    ).exists()
