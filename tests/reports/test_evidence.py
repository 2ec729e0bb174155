"""Robust study statistics and verdicts, on hand-built curves with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

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


def test_bootstrap_mean_of_two_values_spans_them() -> None:
    ci = evidence.bootstrap_mean([0.0, 10.0])
    assert (ci.mean, ci.low, ci.high, ci.n) == (5.0, 0.0, 10.0, 2)
    same = evidence.bootstrap_mean([1.0, 1.0, 1.0])
    assert (same.low, same.high) == (1.0, 1.0)
    assert math.isnan(evidence.bootstrap_mean([None]).mean)


def test_verdicts() -> None:
    apart = evidence.bootstrap_difference([5, 6, 7, 5, 6], [1, 2, 1, 2, 1])
    assert apart.low > 0
    assert evidence.verdict(apart, +1) == "reproduced"
    assert evidence.verdict(apart, -1) == "contradicted"
    overlap = evidence.bootstrap_difference([1, 5, 3], [2, 4, 3])
    assert overlap.low < 0 < overlap.high
    assert evidence.verdict(overlap, +1) == "inconclusive"
    one_seed = evidence.bootstrap_difference([9.0], [1.0])
    assert evidence.verdict(one_seed, +1) == "inconclusive"  # one seed decides nothing


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
    lines = {line.split(" | ")[1]: line for line in body.splitlines() if " vs " in line}
    assert "reproduced" in lines["weight_decay=0.5 vs weight_decay=0.1"]
    assert "inconclusive" in lines["weight_decay=2.0 vs weight_decay=0.1"]
    assert "| weight_decay=0.5 | 3 |" in body  # the robust table counts seeds per setting


def test_streaming_study_reports_ratios_and_needs_a_sink_verdicts(tmp_path: Path) -> None:
    """A variant whose window attention barely loses to the oracle (R_win 1.0) against a
    softmax baseline that collapses (R_win 3.0) reproduces 'needs no first token'."""
    study = tmp_path / "streaming_sweep"
    study.mkdir()
    params = {"seed": "0,1,2", "variant": "softmax,kv_bias"}
    OmegaConf.save(
        OmegaConf.create({"hydra": {"sweeper": {"params": params}}}), study / "multirun.yaml"
    )
    job = 0
    for seed in range(3):
        for variant, r_win in (("softmax", 3.0), ("kv_bias", 1.0)):
            rows = pd.concat(
                [
                    curve_rows(names.FIRST_TOKEN_MASS, [0.05, 0.3]),
                    curve_rows("stream/ratio/window_shift", [1.0, r_win + 0.1 * seed]),
                ]
            )
            write_job(study / str(job), seed, f"variant={variant}", rows)
            job += 1
    body = study_report(study, tmp_path / "docs")
    assert "R_win shift" in body
    verdict_line = next(line for line in body.splitlines() if "variant=kv_bias vs" in line)
    assert "reproduced" in verdict_line
    assert (
        tmp_path / "docs" / "figures" / "streaming_sweep_stream_ratio_window_shift.png"
    ).exists()
