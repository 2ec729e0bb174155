"""The terminal bar counts steps and says "Training", not Lightning's "Epoch 0/-2" (a step-based
run on an endless stream has max_epochs = -1), shows loss, validation loss and the last Sink_1
without `v_num`, and stays within 100 columns."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from lightning.pytorch.callbacks.progress.rich_progress import _RICH_AVAILABLE, RichProgressBar

import sinklab.training.run as run_module
from sinklab.training import progress
from sinklab.training.progress import (
    BAR_COLUMNS,
    TRAIN_TITLE,
    PlainProgress,
    StepRichProgressBar,
    progress_bar,
)
from sinklab.training.run import train
from sinklab.training.run_config import validate_config
from tests.training.conftest import compose_train, tiny_overrides

pytestmark = pytest.mark.skipif(not _RICH_AVAILABLE, reason="rich is not installed")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_the_bar_overrides_the_hooks_lightning_builds(monkeypatch: pytest.MonkeyPatch) -> None:
    # If Lightning renames a hook, the override would silently stop applying: fail here.
    for hook in ("_get_train_description", "configure_columns", "get_metrics"):
        assert callable(getattr(RichProgressBar, hook, None)), hook
    monkeypatch.setattr(progress, "stdout_is_terminal", lambda: True)
    assert isinstance(progress_bar(), StepRichProgressBar)
    monkeypatch.setattr(progress, "stdout_is_terminal", lambda: False)
    assert isinstance(progress_bar(), PlainProgress)


def _frames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, steps: int) -> list[str]:
    """Every frame the bar drew in a 200-column terminal during a tiny run, ANSI codes removed."""
    screen = io.StringIO()
    bar = StepRichProgressBar(console_kwargs={"force_terminal": True, "width": 200, "file": screen})
    monkeypatch.setattr(run_module, "progress_bar", lambda: bar)
    cfg = compose_train([*tiny_overrides(tmp_path, steps), "trainer.progress_bar=true"])
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    train(validate_config(cfg), run_dir)
    text = ANSI.sub("", screen.getvalue())
    return [line.rstrip() for line in re.split(r"[\r\n]", text) if line.strip()]


def test_the_bar_shows_steps_loss_val_and_sink1_within_100_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frames = _frames(tmp_path, monkeypatch, steps=6)
    last = [f for f in frames if f.startswith(TRAIN_TITLE)][-1]
    assert "6/6" in last  # six steps of six
    assert re.search(r"loss: \d+\.\d{3} val: \d+\.\d{3} Sink_1: [\d.]+%$", last), last
    assert all("Epoch" not in f and "/-2" not in f and "v_num" not in f for f in frames)
    # a 200-column terminal, so nothing was cut to fit: the bar itself is this narrow
    assert max(len(f) for f in frames) <= BAR_COLUMNS
