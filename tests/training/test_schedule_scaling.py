"""Short runs are not mostly probes: a run shorter than its schedule's regular interval keeps
only its latest octaves of the log-spaced start, so `trainer.max_steps=50` on the default recipe
probes 4 times, not 8; the default run (`make train`, 1200 steps) and every shipped recipe
keep their schedules exactly."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sinklab.runs.schedule import first_power, is_scheduled, log_spaced_steps
from sinklab.training.callbacks.probes import THINNING, thinning_hint
from sinklab.training.run import train
from sinklab.training.run_config import RunConfig, validate_config
from tests.training.conftest import CONF_DIR, compose_train, tiny_overrides


def _run(tmp_path: Path, *overrides: str) -> RunConfig:
    paths = [f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path}"]
    return validate_config(compose_train([*paths, *overrides]))


def _schedules(run: RunConfig) -> dict[str, list[int]]:
    """Every schedule of a run, as the callbacks compute them (the schedule code, no training)."""
    n, probe = run.trainer.max_steps, run.probe
    due = (n, probe.log_spaced_until, probe.every)
    probes = log_spaced_steps(*due)
    return {
        "checkpoints": log_spaced_steps(n, run.checkpoint.log_spaced_until, run.checkpoint.every),
        "probes": probes,
        "stream": [s for s in probes if probe.stream.due(s, *due)],
        "quant": [s for s in probes if probe.quant.due(s, *due)],
        "interventions": [s for s in probes if probe.interventions.due(s, *due)],
    }


def test_the_default_run_keeps_exactly_its_schedule(tmp_path: Path) -> None:
    run = _run(tmp_path)  # make train: experiment=quickstart, 1200 steps
    default = [0, 1, 2, 4, 8, 16, 32, 64, 128, 200, 256, 400, 600, 800, 1000, 1200]
    assert _schedules(run) == {
        "checkpoints": default,
        "probes": default,
        "stream": default,
        "quant": [0, 256, 1200],
        "interventions": [0, 16, 32, 64, 128, 256, 1200],
    }


def test_a_50_step_run_of_the_default_recipe_probes_four_times(tmp_path: Path) -> None:
    run = _run(tmp_path, "trainer.max_steps=50")
    # before: 0, 1, 2, 4, 8, 16, 32, 50 (8 probes, 8 streams, 4 interventions)
    assert _schedules(run) == {
        "checkpoints": [0, 16, 32, 50],
        "probes": [0, 16, 32, 50],
        "stream": [0, 16, 32, 50],
        "quant": [0, 50],
        "interventions": [0, 16, 32, 50],
    }


@pytest.mark.parametrize(
    "experiment", sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))
)
def test_every_shipped_recipe_keeps_its_whole_schedule(tmp_path: Path, experiment: str) -> None:
    extra = []
    if experiment == "text":  # the one recipe that needs the user's files
        (tmp_path / "a.txt").write_text("some text")
        extra = [f"data.text_files.paths=[{tmp_path / 'a.txt'}]"]
    run = _run(tmp_path, f"experiment={experiment}", *extra)
    for cfg in (run.probe, run.checkpoint):
        assert first_power(run.trainer.max_steps, cfg.log_spaced_until, cfg.every) == 1


@pytest.mark.parametrize(
    "max_steps,until,every,expected",
    [
        (30, 256, 200, [0, 8, 16, 30]),
        (60, 512, 500, [0, 16, 32, 60]),  # experiment=text cut to 60 steps
        (100, 256, 200, [0, 16, 32, 64, 100]),  # half the interval: half of 7 octaves
        (199, 256, 200, [0, 2, 4, 8, 16, 32, 64, 128, 199]),
        (200, 256, 200, [0, 1, 2, 4, 8, 16, 32, 64, 128, 200]),  # a whole interval: all
        (3, 256, 100, [0, 1, 2, 3]),  # two octaves or fewer: nothing to thin
        (4, 512, 4, [0, 1, 2, 4]),  # debug=tiny
    ],
)
def test_short_runs_keep_their_latest_octaves(
    max_steps: int, until: int, every: int, expected: list[int]
) -> None:
    assert log_spaced_steps(max_steps, until, every) == expected
    listed = {s for s in range(max_steps + 1) if is_scheduled(s, max_steps, until, every)}
    assert listed == set(expected)


@pytest.mark.parametrize("until,every", [(256, 200), (512, 500), (256, 100), (4, 7)])
def test_a_longer_run_never_has_fewer_probes(until: int, every: int) -> None:
    counts = [len(log_spaced_steps(n, until, every)) for n in range(1, 1500)]
    assert counts == sorted(counts)


def test_heavy_probes_say_how_to_thin_them() -> None:
    assert thinning_hint(0.10) is None
    assert thinning_hint(0.314) == (
        "probes took 31 % of this run; fewer: callbacks.probe.every=<steps> "
        "callbacks.probe.log_spaced_until=0; lighter: callbacks.probe.stream.enabled=false "
        "callbacks.probe.quant.enabled=false callbacks.probe.interventions.enabled=false; "
        "none: callbacks.probe.enabled=false"
    )


def test_a_run_mostly_probes_logs_the_hint_with_its_share(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """debug=tiny: a 4-step run whose probes (5, with their evaluations) dwarf its training."""
    run = validate_config(compose_train(tiny_overrides(tmp_path)))
    with caplog.at_level(logging.INFO, logger="sinklab.training.callbacks.probes"):
        result = train(run, tmp_path / "run")
    hints = [r.getMessage() for r in caplog.records if "probes took" in r.getMessage()]
    assert len(hints) == 1 and hints[0].endswith(THINNING)
    logged = int(hints[0].split("probes took ")[1].split(" %")[0])
    probe_all = result.probe_seconds + result.quant_seconds + result.intervention_seconds
    # the callback's own clock starts before the first probe, the summary's fit time a little
    # earlier: the two shares agree within a few points
    assert abs(logged - 100 * probe_all / result.fit_seconds) < 5
