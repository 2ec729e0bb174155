"""How a run shows its progress: a bar in a terminal, plain log lines anywhere else.

A run under nohup or SLURM writes to a file, where a live bar leaves only its last frame (and,
80 columns wide, wraps it over several lines): nothing shows while the run goes. So when
stdout is not a terminal the progress goes out as plain lines through the log (Hydra prints
them and files them in `train.log`), one every few per cent of the run and at least one a
minute: step, loss, validation loss, tokens/s and the last Sink_1.

In a terminal it is Lightning's Rich bar, titled "Training" (sinklab trains for
`trainer.max_steps` on an endless stream, so Lightning's own title would read "Epoch 0/-2"),
showing the step, loss, validation loss and last Sink_1 (no `v_num`), within 100 columns.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.rich_progress import _RICH_AVAILABLE, RichProgressBar

from sinklab.analysis.names import SINK1
from sinklab.training.callbacks.probes import ProbeCallback

TRAIN_TITLE = "Training"
BAR_COLUMNS = 100  # the widest line the terminal bar may draw
LINES_PER_RUN = 20  # plain lines: about one every 5 % of the run ...
MAX_SILENCE_S = 60.0  # ... and at least one a minute

log = logging.getLogger(__name__)


def last_sink1(trainer: L.Trainer) -> tuple[int, float] | None:
    """(step, Sink_1 in %) of the latest probe, or None before the first (or without probes)."""
    for callback in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(callback, ProbeCallback) and callback.history:
            step = max(callback.history)
            value = callback.history[step].get(SINK1)
            return None if value is None else (step, float(value))
    return None


def progress_figures(trainer: L.Trainer) -> dict[str, str]:
    """The figures both displays show, formatted, in order: loss, validation loss, Sink_1
    (with the probe step it was measured at). Absent ones are left out."""
    metrics = trainer.progress_bar_metrics
    out: dict[str, str] = {}
    if "train/loss" in metrics:
        out["loss"] = f"{float(metrics['train/loss']):.3f}"
    if "val/loss" in metrics:
        out["val"] = f"{float(metrics['val/loss']):.3f}"
    sink = last_sink1(trainer)
    if sink is not None:
        out["Sink_1"] = f"{sink[1]:.3g}% @{sink[0]}"
    return out


def bar_figures(trainer: L.Trainer) -> dict[str, str]:
    """The bar's figures: `progress_figures` with Sink_1 without its step (columns are short)."""
    figures = progress_figures(trainer)
    if "Sink_1" in figures:
        figures["Sink_1"] = figures["Sink_1"].split(" @")[0]
    return figures


def line_interval(max_steps: int, log_every_n_steps: int) -> int:
    """Steps between plain lines: about `LINES_PER_RUN` lines a run, on a round number (1, 2
    or 5 x 10^k), and never more often than tokens/s is measured (`log_every_n_steps`)."""
    raw = max(1.0, max_steps / LINES_PER_RUN)
    power = 10 ** math.floor(math.log10(raw))
    nice = min((m * power for m in (1, 2, 5, 10)), key=lambda c: abs(math.log(c / raw)))
    return max(int(nice), log_every_n_steps, 1)


def progress_line(trainer: L.Trainer) -> str:
    """One plain progress line: `step 50/1200 (4%)  loss 2.315  val 2.402  tokens/s 6,658
    Sink_1 9.1% @32`."""
    step, total = trainer.global_step, trainer.max_steps
    parts = [f"step {step}/{total} ({100 * step / max(total, 1):.0f}%)"]
    figures = progress_figures(trainer)
    parts += [f"{name} {figures[name]}" for name in ("loss", "val") if name in figures]
    speed = trainer.progress_bar_metrics.get("train/tokens_per_s")
    if speed is not None:
        parts.append(f"tokens/s {float(speed):,.0f}")
    if "Sink_1" in figures:
        parts.append(f"Sink_1 {figures['Sink_1']}")
    return "  ".join(parts)


class PlainProgress(ProgressBar):
    """Progress as log lines, for output that is not a terminal (a file, a cluster's log).

    A step's line goes out when the next step starts (or training ends), after every callback
    has run on it: the probe and the validation of that step are on its line."""

    def __init__(self, max_silence_s: float = MAX_SILENCE_S) -> None:
        super().__init__()
        self._enabled = True
        self.max_silence_s = max_silence_s
        self.interval = 1
        self._last_step = -1
        self._last_time = 0.0
        self._pending = False

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    @property
    def is_enabled(self) -> bool:
        return self._enabled

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.interval = line_interval(trainer.max_steps, trainer.log_every_n_steps)
        self._last_step = trainer.global_step  # a resume starts mid-run
        self._last_time = time.monotonic()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object
    ) -> None:
        step = trainer.global_step
        if step == self._last_step:  # gradient accumulation: not a new optimizer step
            return
        due = step % self.interval == 0 or step >= trainer.max_steps
        self._pending = due or time.monotonic() - self._last_time >= self.max_silence_s

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object
    ) -> None:
        if self._pending:
            self._emit(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending or trainer.global_step != self._last_step:  # the final figures
            self._emit(trainer)

    def _emit(self, trainer: L.Trainer) -> None:
        self._pending = False
        self._last_step, self._last_time = trainer.global_step, time.monotonic()
        if self.is_enabled:
            log.info(progress_line(trainer))


class StepRichProgressBar(RichProgressBar):
    """Lightning's Rich bar, titled "Training" instead of "Epoch e/max_epochs - 1", showing
    our figures only, narrow enough for a 100-column terminal."""

    BAR_WIDTH = 16

    def _get_train_description(self, current_epoch: int) -> str:
        # padded to the validation title, as Lightning does, so the two bars do not flicker
        return f"{TRAIN_TITLE:{len(self.validation_description)}}"

    def configure_columns(self, trainer: L.Trainer) -> list[Any]:
        """Lightning's columns with a 16-cell bar (not 40) and without its/s (the plain lines
        give tokens/s): room for the figures within `BAR_COLUMNS`, even at step 12000/12000
        after 12 hours with a loss above 10."""
        description, bar, count, times, _speed = super().configure_columns(trainer)
        bar.bar_width = self.BAR_WIDTH
        return [description, bar, count, times]

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        return bar_figures(trainer)


class StepTQDMProgressBar(TQDMProgressBar):
    """tqdm's bar (when Rich is not installed), showing the same figures as the Rich bar."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        return bar_figures(trainer)


def stdout_is_terminal() -> bool:
    """Whether a live bar can be seen: stdout is a terminal (not a file, a pipe, a job log)."""
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


def progress_bar() -> ProgressBar:
    """The bar in a terminal (Rich when installed, else tqdm), plain lines anywhere else."""
    if not stdout_is_terminal():
        return PlainProgress()
    return StepRichProgressBar() if _RICH_AVAILABLE else StepTQDMProgressBar()
