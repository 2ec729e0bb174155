"""The progress bar counts steps and says "Training", not Lightning's "Epoch 0/-2" (a step-based
run on an endless stream has max_epochs = -1)."""

from __future__ import annotations

from pathlib import Path

import pytest
from lightning.pytorch.callbacks.progress.rich_progress import _RICH_AVAILABLE, RichProgressBar

from sinklab.training.progress import TRAIN_TITLE, StepRichProgressBar, progress_bar
from sinklab.training.run import train
from sinklab.training.run_config import validate_config
from tests.training.conftest import compose_train, tiny_overrides

pytestmark = pytest.mark.skipif(not _RICH_AVAILABLE, reason="rich is not installed")


def test_the_bar_overrides_the_title_lightning_builds():
    # If Lightning renames the hook, the override would silently stop applying: fail here.
    assert callable(getattr(RichProgressBar, "_get_train_description", None))
    assert isinstance(progress_bar(), StepRichProgressBar)


def test_a_run_shows_training_steps_not_a_negative_epoch(tmp_path: Path, capsys) -> None:
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("trainer.progress_bar")]
    cfg = compose_train([*overrides, "trainer.progress_bar=true"])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    train(validate_config(cfg), run_dir)
    shown = capsys.readouterr().out
    assert TRAIN_TITLE in shown and "4/4" in shown  # four steps of four
    assert "Epoch" not in shown and "/-2" not in shown
