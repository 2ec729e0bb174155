"""Progress when stdout is not a terminal (nohup, SLURM, `> log`): plain lines while the run
goes, not the last frame of a bar."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from sinklab.training.progress import PlainProgress, line_interval
from tests.training.conftest import tiny_overrides

LINE = re.compile(
    r"step (\d+)/6 \(\d+%\)  loss \d+\.\d{3}(  val \d+\.\d{3})?  tokens/s [\d,]+"
    r"  Sink_1 [\d.]+% @(\d+)$"
)


def test_plain_lines_when_stdout_is_a_file(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    log_file = tmp_path / "stdout.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = [*tiny_overrides(tmp_path, steps=6), "trainer.progress_bar=true", "trainer.threads=1"]
    with log_file.open("w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "sinklab.train", *args, f"hydra.run.dir={run_dir}"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.PIPE,
            text=True,
            timeout=600,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    shown = log_file.read_text()
    assert "━" not in shown  # no bar frame
    lines = [m for m in map(LINE.search, shown.splitlines()) if m]
    # debug=tiny: tokens/s every step (log_every_n_steps 1), so a line every step
    assert [int(m.group(1)) for m in lines] == [1, 2, 3, 4, 5, 6]
    # the last Sink_1 is the latest probe's (probes at 0, 1, 2, 4, 6; at step 3 still step 2's)
    assert [int(m.group(3)) for m in lines] == [1, 2, 2, 4, 4, 6]
    assert lines[-1].group(2), "validation ran at the last step, so its loss is on the line"
    # the same lines are in the run's own log
    filed = (run_dir / "train.log").read_text()
    assert lines[-1].group(0) in filed


@pytest.mark.parametrize(
    "max_steps,log_every,expected",
    [
        (1200, 10, 50),  # the default run: 24 lines
        (50, 10, 10),  # never more often than tokens/s is measured
        (10000, 10, 500),
        (4768, 10, 200),  # gu60m
        (6, 1, 1),
        (100, 1, 5),
    ],
)
def test_about_twenty_lines_a_run_on_round_steps(
    max_steps: int, log_every: int, expected: int
) -> None:
    assert line_interval(max_steps, log_every) == expected


def _fake_trainer(max_steps: int) -> SimpleNamespace:
    """What the plain lines read from a trainer: steps, its logged figures, its callbacks."""
    return SimpleNamespace(
        global_step=0,
        max_steps=max_steps,
        log_every_n_steps=10,
        progress_bar_metrics={},
        callbacks=[],
    )


def _steps_shown(trainer: SimpleNamespace, bar: PlainProgress, caplog) -> list[str]:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="sinklab.training.progress"):
        bar.on_train_start(trainer, None)
        for step in range(1, trainer.max_steps + 1):
            bar.on_train_batch_start(trainer, None)
            trainer.global_step = step
            trainer.progress_bar_metrics = {"train/loss": torch.tensor(5.0 - step / 100)}
            bar.on_train_batch_end(trainer, None)
        bar.on_train_end(trainer, None)
    return [r.getMessage() for r in caplog.records]


def test_a_line_every_interval_and_one_at_the_end(caplog) -> None:
    shown = _steps_shown(_fake_trainer(45), PlainProgress(max_silence_s=1e9), caplog)
    assert shown == [
        "step 10/45 (22%)  loss 4.900",
        "step 20/45 (44%)  loss 4.800",
        "step 30/45 (67%)  loss 4.700",
        "step 40/45 (89%)  loss 4.600",
        "step 45/45 (100%)  loss 4.550",
    ]


def test_a_slow_run_still_shows_a_line_every_so_often(caplog) -> None:
    """Slow steps (a big model): a line as soon as the silence limit passes, whatever the step."""
    shown = _steps_shown(_fake_trainer(12), PlainProgress(max_silence_s=0.0), caplog)
    assert [line.split(" (")[0] for line in shown] == [f"step {s}/12" for s in range(1, 13)]
