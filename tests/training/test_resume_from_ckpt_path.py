"""Resume is one argument: `ckpt_path=<run>/checkpoints/last.ckpt` alone takes the run's saved
config (an ALiBi sink-token run used to be refused unless every override was typed again),
extra overrides are checked against it, a refused resume writes nothing into the run folder,
and the summary afterwards covers the whole run from step 0."""

from __future__ import annotations

import json
from pathlib import Path

from tests.reliability.helpers import error_line, run_cli, tiny


def _files(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def _first_run(tmp: Path) -> Path:
    run_dir = tmp / "first"
    args = tiny(tmp, 4) + ["model.pos=alibi", "variant=sink_token", f"hydra.run.dir={run_dir}"]
    proc = run_cli(args, tmp)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def _resume(tmp: Path, last: Path, *extra: str):  # noqa: ANN202
    # Only what a user types (and where this test's outputs go): no model, data or variant.
    return run_cli([f"ckpt_path={last}", f"paths.output_dir={tmp / 'out'}", *extra], tmp)


def test_resume_from_ckpt_path_alone_continues_the_run(tmp_path: Path) -> None:
    run_dir = _first_run(tmp_path)
    first = json.loads((run_dir / "summary.json").read_text())
    proc = _resume(tmp_path, run_dir / "checkpoints" / "last.ckpt", "trainer.max_steps=6")
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["steps_completed"] == 6
    assert summary["resumed_from"] == [4]
    # the whole run: probes from step 0, every checkpoint, the first part's time included
    for metric in ("sink/sink1_pct", "slot_mass/sink_token_0"):
        fig = summary["headline"][metric]
        assert (fig["first_step"], fig["last_step"]) == (0, 6)
        assert fig["first"] == first["headline"][metric]["first"]
    ckpts = sorted(p.name[:11] for p in (run_dir / "checkpoints").glob("step*.ckpt"))
    assert summary["n_checkpoints"] == len(ckpts) and ckpts[-1] == "step0000006"
    assert summary["fit_seconds"] > first["fit_seconds"]
    assert summary["tokens_seen"] == 6 * 4 * 32
    # the resumed part trained the run's own model (ALiBi, one sink token)
    model = json.loads((run_dir / "model_config.json").read_text())
    assert model["pos"] == "alibi" and model["n_sink_tokens"] == 1
    assert not list((tmp_path / "out").glob("runs/*")), "the new Hydra folder is dropped"


def test_a_refused_resume_writes_nothing_into_the_run(tmp_path: Path) -> None:
    run_dir = _first_run(tmp_path)
    before = _files(run_dir)
    proc = _resume(tmp_path, run_dir / "checkpoints" / "last.ckpt", "model.pos=rope")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert error_line(proc.stderr) == (
        "error: ckpt_path: checkpoint was trained with a different model config: "
        "model.pos (checkpoint 'alibi', config 'rope')"
    )
    proc = _resume(tmp_path, run_dir / "checkpoints" / "last.ckpt", "variant=kv_bias")
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert error_line(proc.stderr).startswith("error: variant: 'kv_bias' is not the run's")
    assert _files(run_dir) == before
    assert not list((tmp_path / "out").glob("runs/*"))
