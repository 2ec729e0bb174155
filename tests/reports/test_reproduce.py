"""`make reproduce`'s plan: job counts from the studies' own sweeps, estimates from recorded
runs (scaled to the configured steps), and the budget line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sinklab.reports import reproduce
from sinklab.reports.reproduce import StudyPlan, plan_study, render_plan, sweep_size


def test_sweep_size_counts_as_hydra_does() -> None:
    assert sweep_size({}) == 1
    assert sweep_size({"seed": "0,1,2", "model.pos": "rope,alibi"}) == 6
    assert sweep_size({"seed": "range(0,5)", "x": "7"}) == 5
    assert sweep_size({"groups": "'[a,b]','[c]'"}) == 2  # two list values, not three items


def _job(folder: Path, fit_s: float, steps: int, batch: int = 32, seq: int = 128) -> None:
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(
        OmegaConf.create({"data": {"batch_size": batch, "seq_len": seq}, "trainer": {}}),
        folder / ".hydra" / "config.yaml",
    )
    summary = {"fit_seconds": fit_s, "tokens_seen": steps * batch * seq}
    (folder / "summary.json").write_text(json.dumps(summary))


def test_a_study_is_sized_from_its_config_and_timed_from_its_runs(tmp_path: Path) -> None:
    # pos_sweep: seeds 0,1 x 5 encodings, 500 steps, two jobs side by side
    for i, fit in enumerate((100.0, 120.0, 400.0)):  # median 120 s for 200 steps
        _job(tmp_path / "pos_sweep" / str(i), fit, steps=200)
    (tmp_path / "pos_sweep" / "3").mkdir()  # an unfinished job: no summary, not counted
    plan = plan_study("pos_sweep", tmp_path)
    assert (plan.jobs, plan.steps, plan.parallel) == (10, 500, 2)
    assert plan.seconds_per_step == pytest.approx(0.6)
    assert "3 runs" in plan.basis
    # 5 rounds of two jobs, each start-up + 500 steps x 0.6 s
    assert plan.estimate_s(None) == pytest.approx(5 * (reproduce.STARTUP_S + 300.0))


def test_unrun_studies_borrow_the_median_rate_and_the_total_meets_the_budget_or_not() -> None:
    measured = StudyPlan("a", jobs=4, steps=100, parallel=2, seconds_per_step=1.0, basis="x")
    unrun = StudyPlan("b", jobs=1, steps=100, parallel=2, seconds_per_step=None, basis="y")
    assert reproduce.fallback_rate([measured, unrun]) == 1.0
    assert unrun.estimate_s(1.0) == pytest.approx(reproduce.STARTUP_S + 100.0)
    assert math.isnan(unrun.estimate_s(None))
    text = render_plan([measured, unrun])
    assert text.splitlines()[-1].startswith("total: 5 jobs")
    assert "within the 2 h budget" in text
    big = StudyPlan("c", jobs=100, steps=1000, parallel=1, seconds_per_step=1.0, basis="z")
    assert "OVER the 2 h budget" in render_plan([big])


def test_script_refuses_an_unknown_study_in_one_line(capsys: pytest.CaptureFixture) -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "reproduce_script", Path(__file__).resolve().parents[2] / "scripts" / "reproduce.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    assert module.main(["--only", "nope", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --only: unknown study 'nope'")
    assert all(s in reproduce.STUDIES for s in ("pos_sweep", "frames_text_sweep"))
