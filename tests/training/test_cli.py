"""The real command line: a run, a bad config, a two-job multirun, W&B offline."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.training.conftest import tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


def _cli(args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "sinklab.train", *args, "trainer.threads=1"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_run_with_wandb_offline(tmp_path: Path) -> None:
    run_dir = tmp_path / "cli_run"
    proc = _cli(tiny_overrides(tmp_path) + ["logger=wandb", f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sinklab run finished" in proc.stdout
    assert (run_dir / ".hydra" / "config.yaml").exists()
    assert list((run_dir / "wandb").glob("offline-run-*")), "W&B should have written an offline run"
    assert list(
        run_dir.glob("wandb/offline-run-*/files/media/images/probe/attention_maps_*.png")
    ), "attention maps logged as images"
    rows = pd.read_parquet(run_dir / "metrics" / "probes.parquet")
    assert rows["step"].max() == 4


def test_bad_value_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    run_dir = tmp_path / "bad_run"
    proc = _cli(
        tiny_overrides(tmp_path) + ["model.pos=spiral", f"hydra.run.dir={run_dir}"], tmp_path
    )
    assert proc.returncode == 2
    # exactly one line, no stack trace or Hydra banner before it
    assert proc.stderr.splitlines() == [
        "error: model.pos: 'spiral' is not allowed; "
        "choose one of: rope, alibi, learned, sinusoidal, none"
    ]
    assert not run_dir.exists()


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    proc = _cli(
        tiny_overrides(tmp_path) + ["+model.colour=red", f"hydra.run.dir={tmp_path / 'r'}"],
        tmp_path,
    )
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "model.colour" in lines[0], lines


def test_multirun_of_two_jobs(tmp_path: Path) -> None:
    """`make sweep`'s path: joblib workers (two jobs side by side) and the default output
    folders (no paths.output_dir, no sweep dir), under the folder the command started from."""
    args = [o for o in tiny_overrides(tmp_path) if not o.startswith("paths.output_dir")]
    proc = _cli(["-m", *args, "model.pos=rope,alibi", "hydra/launcher=local2"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweeps = list((tmp_path / "outputs" / "multirun").iterdir())
    assert len(sweeps) == 1
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir() and not p.name.startswith("."))
    # job folders are named by their number and overrides (runs.layout.job_dir_name)
    assert [j.name.split("_")[0] for j in jobs] == ["0", "1"]
    assert "model.pos=rope" in jobs[0].name and "model.pos=alibi" in jobs[1].name
    for job in jobs:
        assert (job / "metrics" / "probes.parquet").exists()
        assert (job / "checkpoints" / "last.ckpt").exists()
