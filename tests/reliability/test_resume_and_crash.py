"""Real subprocess runs killed with SIGKILL: at a random step (then resumed, and compared with an
uninterrupted run), in the middle of a checkpoint write, and in the middle of a metrics write."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from sinklab.analysis.records import read_rows
from sinklab.runs.checkpoints import UnreadableCheckpointError, load_checkpoint_state
from tests.reliability.helpers import error_line, run_cli, start_cli, tiny

STEPS = 24
# Weights-only checkpoints (and probes) at 0, 1, 2, 4, 8, 12, 16, 20, 24; the full state
# (last.ckpt) at 0, 6, 12, 18, 24: a resume goes back to a full one, up to 5 steps behind.
FULL_EVERY = 6
SCHEDULE = [
    "callbacks.checkpoint.log_spaced_until=4",
    "callbacks.checkpoint.every=4",
    f"callbacks.checkpoint.full_every={FULL_EVERY}",
    "trainer.val_every_n_steps=5",
]
KEY = ["step", "layer", "head", "metric"]


def _overrides(tmp: Path, run_dir: Path, steps: int = STEPS) -> list[str]:
    return tiny(tmp, steps) + SCHEDULE + [f"hydra.run.dir={run_dir}"]


def _losses(run_dir: Path) -> pd.Series:
    table = pd.read_csv(run_dir / "csv" / "metrics.csv")
    return table.dropna(subset=["train/loss"]).set_index("step")["train/loss"]


def _probe_values(run_dir: Path) -> pd.Series:
    rows = read_rows(run_dir / "metrics" / "probes.parquet")
    assert not rows.duplicated(KEY).any(), "a probe row was written twice"
    return rows.set_index(KEY).sort_index()["value"]


def _wait_for(path_glob: tuple[Path, str], proc, timeout: float = 120) -> Path:  # noqa: ANN001
    folder, pattern = path_glob
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(folder.glob(pattern)) if folder.exists() else []
        if found:
            return found[0]
        assert proc.poll() is None, (
            f"run ended before {pattern} appeared: {proc.communicate()[1][-2000:]}"
        )
        time.sleep(0.01)
    raise AssertionError(f"{pattern} did not appear within {timeout}s")


def test_sigkill_at_a_random_step_then_resume_is_exact(tmp_path: Path) -> None:
    """Losses and probe values after the resume equal an uninterrupted run's, bit for bit."""
    # Seeded, so a failure reproduces; set SINKLAB_TEST_KILL_SEED to try other kill steps.
    seed = int(os.environ.get("SINKLAB_TEST_KILL_SEED", "0"))
    kill_after = random.Random(seed).choice([4, 8, 12])
    where = f"killed after step {kill_after} (SINKLAB_TEST_KILL_SEED={seed})"
    full_dir, cut_dir = tmp_path / "full", tmp_path / "cut"
    full = start_cli(_overrides(tmp_path, full_dir), tmp_path)
    cut = start_cli(_overrides(tmp_path, cut_dir), tmp_path, faults="slow=0.15")
    _wait_for((cut_dir / "checkpoints", f"step{kill_after:07d}-*.ckpt"), cut)
    cut.send_signal(signal.SIGKILL)
    cut.communicate()
    assert cut.returncode == -signal.SIGKILL, where
    assert not (cut_dir / "summary.json").exists(), f"the run finished before the kill; {where}"

    # last.ckpt, the full state: the newest full step before the kill (its background write
    # may still have been in flight at the kill, then the one before it).
    latest = cut_dir / "checkpoints" / "last.ckpt"
    resume_step = int(load_checkpoint_state(latest)["global_step"])
    assert resume_step % FULL_EVERY == 0, where
    assert kill_after - 2 * FULL_EVERY <= resume_step < STEPS, where
    resumed = run_cli(_overrides(tmp_path, cut_dir / "ignored") + [f"ckpt_path={latest}"], tmp_path)
    assert resumed.returncode == 0, f"{where}: {resumed.stderr[-3000:]}"
    full_out, full_err = full.communicate(timeout=300)
    assert full.returncode == 0, full_err[-3000:]

    # Losses: every step the resumed run trained matches; the earlier rows the killed run had
    # flushed (if any) were kept and match too.
    want, got = _losses(full_dir), _losses(cut_dir)
    assert not got.index.duplicated().any(), where
    resumed_part = want[want.index >= resume_step]
    assert len(resumed_part) >= STEPS - resume_step, where
    pd.testing.assert_series_equal(
        got.reindex(resumed_part.index), resumed_part, check_exact=True, obj=where
    )
    pd.testing.assert_series_equal(got, want.reindex(got.index), check_exact=True, obj=where)
    # Probes: every step, before and after the kill, measured once, with identical values.
    pd.testing.assert_series_equal(
        _probe_values(cut_dir), _probe_values(full_dir), check_exact=True, obj=where
    )
    a = load_checkpoint_state(full_dir / "checkpoints" / "last.ckpt")["state_dict"]
    b = load_checkpoint_state(cut_dir / "checkpoints" / "last.ckpt")["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), where
    assert not (cut_dir / "ignored").exists()


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_one(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # Steps 0, 1, 2 are saved (and last.ckpt at 0); step 4's is torn in half, then the process dies.
    proc = run_cli(
        _overrides(tmp_path, run_dir, steps=8), tmp_path, faults="kill_checkpoint=step0000004"
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    ckpts = run_dir / "checkpoints"
    torn = list(ckpts.glob(".step0000004-*.ckpt.tmp"))
    assert torn, "the kill should have hit the step-4 write"
    with pytest.raises(UnreadableCheckpointError):
        load_checkpoint_state(torn[0])
    assert sorted(p.name for p in ckpts.glob("step*.ckpt")) == [
        "step0000000-tokens0.ckpt",
        "step0000001-tokens128.ckpt",
        "step0000002-tokens256.ckpt",
    ]
    for path in [*ckpts.glob("step*.ckpt"), ckpts / "last.ckpt"]:
        load_checkpoint_state(path)
    assert load_checkpoint_state(ckpts / "last.ckpt")["global_step"] == 0
    # The probe at step 4 ran before the checkpoint; its rows are complete.
    assert sorted(read_rows(run_dir / "metrics" / "probes.parquet")["step"].unique()) == [
        0,
        1,
        2,
        4,
    ]

    resumed = run_cli(
        _overrides(tmp_path, tmp_path / "x", steps=8) + [f"ckpt_path={ckpts}/last.ckpt"], tmp_path
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert load_checkpoint_state(ckpts / "last.ckpt")["global_step"] == 8
    load_checkpoint_state(next(ckpts.glob("step0000004-*.ckpt")))  # the torn write was redone
    assert not list(ckpts.glob(".*.tmp"))
    rows = read_rows(run_dir / "metrics" / "probes.parquet")
    assert sorted(rows["step"].unique()) == [0, 1, 2, 4, 8]
    assert not rows.duplicated(KEY).any(), (
        "step 4 was re-measured on resume and must not appear twice"
    )


def test_sigkill_during_a_metrics_write_keeps_every_earlier_row(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # Probe writes 1 and 2 are steps 0 and 1; the 3rd (step 2) is torn, then the process dies.
    proc = run_cli(_overrides(tmp_path, run_dir, steps=8), tmp_path, faults="kill_parquet=3")
    assert proc.returncode == -signal.SIGKILL, error_line(proc.stderr)
    metrics = run_dir / "metrics"
    assert list(metrics.glob(".probes.parquet.*")), "the kill should have hit a write in progress"
    rows = read_rows(metrics / "probes.parquet")
    # W8A8 and the interventions run on their own schedule (the first step here): compare the
    # other rows per step
    scheduled = rows["metric"].str.startswith(("quant/", "intervention/"))
    assert set(rows.loc[scheduled, "step"]) == {0}
    assert rows.loc[scheduled, "metric"].str.startswith("intervention/").any()
    per_step = rows[~scheduled].groupby("step").size()
    assert list(per_step.index) == [0, 1]
    assert per_step[0] == per_step[1] > 0, "a step's rows are written all together or not at all"
    streamed = rows[rows["metric"].str.startswith("stream/")]
    assert set(streamed["step"]) == {0, 1}, "the streaming evaluation runs at every probe"
    assert rows["value"].notna().any()
    # Probes run before checkpoints: step 2 has no checkpoint, the earlier ones load.
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("step*.ckpt"))
    assert ckpts == ["step0000000-tokens0.ckpt", "step0000001-tokens128.ckpt"]
    assert load_checkpoint_state(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 0
