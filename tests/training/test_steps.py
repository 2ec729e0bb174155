"""One step convention: train, validation, probe and checkpoint rows all sit at the number of
optimizer steps completed, and validation always runs after the last step.

Before, Lightning put train and validation rows one step early (19, 39, ..., 1199) while
probes and checkpoints sat at 0, 1, 2, ..., 1200; a run whose length was not a multiple of
val_every_n_steps reported an earlier validation loss as final, and a run shorter than it
reported None."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sinklab.runs.checkpoints import list_checkpoints
from sinklab.training.run import RunResult, train, validate_config
from tests.reliability.helpers import tiny
from tests.training.conftest import compose_train


def _train(tmp: Path, steps: int, extra: list[str]) -> tuple[Path, RunResult]:
    run_dir = tmp / "run"
    run_dir.mkdir()
    result = train(validate_config(compose_train(tiny(tmp, steps) + extra)), run_dir)
    return run_dir, result


def test_every_row_is_at_the_steps_completed(tmp_path: Path) -> None:
    run_dir, result = _train(
        tmp_path, 5, ["trainer.val_every_n_steps=2", "trainer.log_every_n_steps=2"]
    )
    csv = pd.read_csv(run_dir / "csv" / "metrics.csv")
    train_steps = csv.dropna(subset=["train/loss"])["step"].tolist()
    val = csv.dropna(subset=["val/loss"])
    assert train_steps == [2, 4, 5]  # every log_every_n_steps, and the last step
    assert val["step"].tolist() == [2, 4, 5]  # every val_every_n_steps, and the last step
    # The tokens a row reports are those of its step: step x batch 4 x 32 tokens.
    tokens = csv.dropna(subset=["train/tokens_seen"]).set_index("step")["train/tokens_seen"]
    assert tokens.to_dict() == {2: 256.0, 4: 512.0, 5: 640.0}
    # Probes and checkpoints: before training (0) and after the last step (5), on the same
    # axis in the probe table and the logger.
    probe_steps = sorted(pd.read_parquet(run_dir / "metrics" / "probes.parquet")["step"].unique())
    assert probe_steps[0] == 0 and probe_steps[-1] == 5
    assert probe_steps == sorted(csv.dropna(subset=["sink/sink1_pct"])["step"].unique())
    ckpt_steps = sorted(c.step for c in list_checkpoints(run_dir) if c.step >= 0)
    assert ckpt_steps[0] == 0 and ckpt_steps[-1] == 5
    # The final validation loss is the last step's.
    assert result.final_val_loss == val.set_index("step").loc[5, "val/loss"]


def test_a_run_shorter_than_the_validation_interval_still_validates(tmp_path: Path) -> None:
    run_dir, result = _train(tmp_path, 3, ["trainer.val_every_n_steps=250"])
    val = pd.read_csv(run_dir / "csv" / "metrics.csv").dropna(subset=["val/loss"])
    assert val["step"].tolist() == [3]
    assert result.final_val_loss is not None and math.isfinite(result.final_val_loss)
    assert result.final_val_loss == val["val/loss"].iloc[0]
