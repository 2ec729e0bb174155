"""A requeued job (the same command, relaunched into the same run folder, as submitit's requeue
does through Hydra) resumes from last.ckpt by itself and continues the same W&B run; offline,
no SLURM, no network."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from sinklab.runs.checkpoints import load_checkpoint_state
from tests.reliability.helpers import cli_args, cli_env, start_cli, tiny
from tests.training.test_ddp_cpu import wandb_run_record

STEPS = 12
OVERRIDES = [
    "callbacks.checkpoint.log_spaced_until=2",
    "callbacks.checkpoint.every=4",
    "callbacks.checkpoint.full_every=3",
    "callbacks.probe.stream.enabled=false",
    "trainer.val_every_n_steps=5",
    "logger=wandb",
    "logger.mode=offline",
]


def _losses(run_dir: Path) -> pd.Series:
    table = pd.read_csv(run_dir / "csv" / "metrics.csv")
    return table.dropna(subset=["train/loss"]).set_index("step")["train/loss"]


def _last_step(run_dir: Path) -> int:
    last = run_dir / "checkpoints" / "last.ckpt"
    return int(load_checkpoint_state(last)["global_step"]) if last.exists() else -1


@pytest.mark.slow
def test_relaunch_into_the_same_folder_resumes_from_last_and_the_same_wandb_run(
    tmp_path: Path,
) -> None:
    job, full_dir = tmp_path / "job", tmp_path / "full"
    args = tiny(tmp_path, STEPS) + OVERRIDES
    full = start_cli(args + [f"hydra.run.dir={full_dir}"], tmp_path)
    first = start_cli(args + [f"hydra.run.dir={job}"], tmp_path, faults="slow=0.3")
    deadline = time.monotonic() + 300
    while _last_step(job) < 3:  # preempted once last.ckpt holds step 3 (or 6)
        assert first.poll() is None and time.monotonic() < deadline, first.communicate()[1][-2000:]
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    resume_step = _last_step(job)
    assert resume_step in (3, 6) and not (job / "summary.json").exists()
    run_id = (job / "wandb_id.txt").read_text()

    # The requeue: the same command line, the same folder, SLURM's restart counter set.
    requeued = subprocess.run(
        cli_args(args + [f"hydra.run.dir={job}"]),
        cwd=tmp_path,
        env={**cli_env(), "SLURM_RESTART_COUNT": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert requeued.returncode == 0, requeued.stderr[-3000:]
    assert f"resuming from {job / 'checkpoints' / 'last.ckpt'}" in requeued.stderr
    assert full.wait(timeout=300) == 0

    # It continued: the steps after the resume point equal the uninterrupted run's, bit for bit.
    # (Rows sit at the steps completed; the row of the resume step itself is flushed just after
    # its checkpoint, so the kill, in the slow hook between the two, may have taken it.)
    want, got = _losses(full_dir), _losses(job)
    after = want[want.index > resume_step]
    pd.testing.assert_series_equal(got.reindex(after.index), after, check_exact=True)
    assert _last_step(job) == STEPS
    # One W&B run across both launches: two offline folders (one per process), one id.
    runs = sorted((job / "wandb").glob("offline-run-*"))
    assert len(runs) == 2
    assert [wandb_run_record(r).run_id for r in runs] == [run_id, run_id]
    assert (job / "wandb_id.txt").read_text() == run_id


def test_wandb_id_is_kept_in_the_run_folder(tmp_path: Path) -> None:
    from sinklab.training.loggers import wandb_run_id

    first = wandb_run_id(tmp_path)
    assert (tmp_path / "wandb_id.txt").read_text() == first
    assert wandb_run_id(tmp_path) == first  # a resumed run reads it back
    other = tmp_path / "rank1"
    other.mkdir()
    assert wandb_run_id(other, write=False) != first  # another folder, another run
    assert not (other / "wandb_id.txt").exists()  # and a non-zero rank writes nothing


def test_submitit_requeue_reruns_the_same_job(tmp_path: Path) -> None:
    """Hydra's submitit launcher answers a preemption or timeout by resubmitting the same
    callable with the same arguments: the same job number, so the same run folder, where the
    relaunch above resumes."""
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher

    launcher = SlurmLauncher(submitit_folder=str(tmp_path))
    job_args = (["model.pos=alibi"], "hydra.sweep.dir", 1, "job1", {})
    again = launcher.checkpoint(*job_args)
    assert again.function is launcher and again.args == job_args
