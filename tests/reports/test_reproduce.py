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


def _job(
    folder: Path, fit_s: float, steps: int, batch: int = 32, seq: int = 64, d_model: int = 64
) -> None:
    (folder / ".hydra").mkdir(parents=True)
    cfg = {"model": {"d_model": d_model}, "data": {"batch_size": batch, "seq_len": seq}}
    OmegaConf.save(OmegaConf.create({**cfg, "trainer": {}}), folder / ".hydra" / "config.yaml")
    summary = {"fit_seconds": fit_s, "tokens_seen": steps * batch * seq}
    (folder / "summary.json").write_text(json.dumps(summary))


def test_a_study_is_sized_from_its_config_and_timed_from_its_runs(tmp_path: Path) -> None:
    # pos_sweep: seeds 0-4 x 5 encodings, 300 steps, two jobs side by side
    for i, fit in enumerate((100.0, 120.0, 400.0)):  # median 120 s for 200 steps
        _job(tmp_path / "pos_sweep" / str(i), fit, steps=200)
    (tmp_path / "pos_sweep" / "3").mkdir()  # an unfinished job: no summary, not counted
    _job(tmp_path / "pos_sweep" / "4", 9999.0, steps=200, d_model=128)  # an earlier recipe
    plan = plan_study("pos_sweep", tmp_path)
    assert (plan.jobs, plan.steps, plan.parallel) == (25, 300, 2)
    assert plan.seconds_per_step == pytest.approx(0.6)
    assert "3 runs of this recipe" in plan.basis
    # 13 rounds of two jobs, each start-up + 300 steps x 0.6 s, and the study's report
    expected = 13 * (reproduce.STARTUP_S + 180.0) + reproduce.STUDY_S
    assert plan.estimate_s(None) == pytest.approx(expected)


def test_post_steps_count_per_job(tmp_path: Path) -> None:
    plan = StudyPlan(
        "attention_sweep", jobs=4, steps=10, parallel=2, seconds_per_step=1.0, basis=""
    )
    expected = 2 * (reproduce.STARTUP_S + 10.0) + 4 * reproduce.POST_STEP_S["attention_sweep"]
    assert plan.estimate_s(None) == pytest.approx(expected + reproduce.STUDY_S)


def test_unrun_studies_borrow_the_median_rate_and_the_total_meets_the_budget_or_not() -> None:
    measured = StudyPlan("a", jobs=4, steps=100, parallel=2, seconds_per_step=1.0, basis="x")
    unrun = StudyPlan("b", jobs=1, steps=100, parallel=2, seconds_per_step=None, basis="y")
    assert reproduce.fallback_rate([measured, unrun]) == 1.0
    assert reproduce.fallback_rate([unrun]) == reproduce.REFERENCE_S_PER_STEP
    assert unrun.estimate_s(1.0) == pytest.approx(reproduce.STARTUP_S + 100.0 + reproduce.STUDY_S)
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


def test_every_study_runs_five_seeds_or_more() -> None:
    """Issue 18: every study separates its direction from seed noise with >= 5 seeds."""
    from hydra import compose, initialize_config_dir

    from sinklab.configs import CONF_DIR

    for name in reproduce.STUDIES:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(
                config_name="train", overrides=[f"experiment={name}"], return_hydra_config=True
            )
        seeds = str(cfg.hydra.sweeper.params.get("seed", ""))
        assert sweep_size({"seed": seeds}) >= 5, f"{name}: seeds {seeds!r}"
