"""An injected NaN in the loss or the gradients: the run stops naming the step (keeping the last
good checkpoint), or with trainer.on_nonfinite=skip it skips the batch and counts it."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from sinklab.runs.checkpoints import load_checkpoint_state
from sinklab.training.module import NonFiniteLossError
from sinklab.training.run import train, validate_config
from tests.reliability import faults
from tests.reliability.helpers import error_line, run_cli, tiny
from tests.training.conftest import compose_train


def _train(tmp: Path, extra: list[str], steps: int = 6) -> Path:
    run_dir = tmp / "run"
    run_dir.mkdir()
    train(validate_config(compose_train(tiny(tmp, steps) + extra)), run_dir)
    return run_dir


@pytest.mark.parametrize(
    "inject,message",
    [
        (faults.nan_loss_at, "non-finite training loss (nan) at step 3"),
        (faults.nan_grad_at, "non-finite gradient norm at step 3"),
    ],
    ids=["loss", "grad"],
)
def test_nonfinite_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    inject,
    message: str,  # noqa: ANN001
) -> None:
    inject(3, monkeypatch.setattr)
    with pytest.raises(NonFiniteLossError) as err:
        _train(tmp_path, [])
    assert message in str(err.value)
    ckpts = tmp_path / "run" / "checkpoints"
    assert sorted(p.name[:11] for p in ckpts.glob("step*.ckpt")) == [
        "step0000000",
        "step0000001",
        "step0000002",
    ]
    # The full state (the resume point) is from step 0 (full_every is 250); step 2's weights-only
    # checkpoint is the last before the NaN. Both are finite.
    last = load_checkpoint_state(ckpts / "last.ckpt")
    assert last["global_step"] == 0 and "optimizer_states" in last
    good = load_checkpoint_state(next(ckpts.glob("step0000002-*.ckpt")))
    for state in (last, good):
        assert all(torch.isfinite(t).all() for t in state["state_dict"].values())


def test_skip_mode_skips_and_counts_each_nonfinite_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults.nan_loss_at(2, monkeypatch.setattr)
    faults.nan_grad_at(4, monkeypatch.setattr)
    run_dir = _train(tmp_path, ["trainer.on_nonfinite=skip"])
    last = load_checkpoint_state(run_dir / "checkpoints" / "last.ckpt")
    assert last["global_step"] == 6, "the run goes on to max_steps"
    assert last["sinklab"]["skipped_batches"] == 2
    assert all(torch.isfinite(t).all() for t in last["state_dict"].values())
    table = pd.read_csv(run_dir / "csv" / "metrics.csv")
    assert table["train/skipped_batches"].dropna().max() == 2
    # Train rows sit at the steps completed: the batch at global step 2 (NaN loss) is row 3,
    # the one at 4 (NaN gradients) row 5. Their rows show the non-finite value, never the
    # previous batch's loss or norm repeated; every other row is finite.
    rows = table[table["train/tokens_seen"].notna()].set_index("step")
    assert sorted(rows.index) == [1, 2, 3, 4, 5, 6]
    assert math.isnan(rows.loc[3, "train/loss"]) and math.isnan(rows.loc[3, "train/grad_norm"])
    assert not math.isfinite(rows.loc[5, "train/grad_norm"])
    assert all(math.isfinite(v) for v in rows["train/loss"].drop(index=3))
    assert all(math.isfinite(v) for v in rows["train/grad_norm"].drop(index=[3, 5]).dropna())


def test_skipped_gradient_step_leaves_the_weights_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Checkpoints at steps 1 and 2 bracket the batch whose gradients were NaN (weight decay is
    zero, so an update that really was skipped changes nothing)."""
    faults.nan_grad_at(1, monkeypatch.setattr)
    run_dir = _train(tmp_path, ["trainer.on_nonfinite=skip", "optim.weight_decay=0"], steps=2)
    ckpts = sorted((run_dir / "checkpoints").glob("step*.ckpt"))
    before, after = (load_checkpoint_state(p)["state_dict"] for p in ckpts[1:3])
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_cli_exits_3_naming_the_step_and_the_kept_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli(tiny(tmp_path, 6) + [f"hydra.run.dir={run_dir}"], tmp_path, faults="nan_loss=3")
    assert proc.returncode == 3, proc.stderr[-3000:]
    line = error_line(proc.stderr)
    assert line.startswith("error: non-finite training loss (nan) at step 3")
    # The checkpoint named is the one a resume can use: the full state of last.ckpt.
    assert line.endswith(str(run_dir / "checkpoints" / "last.ckpt"))
    assert load_checkpoint_state(run_dir / "checkpoints" / "last.ckpt")["global_step"] == 0
