"""Tokens per second, measured between optimizer steps with probe and checkpoint time excluded."""

from __future__ import annotations

import time

import lightning as L


class ThroughputMonitor(L.Callback):
    """Logs `train/tokens_per_s` every `log_every_n_steps`, and keeps the run's totals (fit wall
    time, probe and checkpoint time) for the end-of-run summary."""

    def __init__(self) -> None:
        self.fit_start = 0.0
        self.fit_seconds = 0.0
        self._window_start = 0.0
        self._window_step = 0
        self._window_overhead = 0.0
        self.last_tokens_per_s: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_start = self._window_start = time.perf_counter()
        self._window_step = trainer.global_step
        self._window_overhead = pl_module.overhead_seconds

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object
    ) -> None:
        step = trainer.global_step
        if step - self._window_step < max(1, trainer.log_every_n_steps):
            return
        now = time.perf_counter()
        busy = (now - self._window_start) - (pl_module.overhead_seconds - self._window_overhead)
        tokens = (step - self._window_step) * pl_module.tokens_per_step
        if busy > 0:
            self.last_tokens_per_s = tokens / busy
            pl_module.log("train/tokens_per_s", self.last_tokens_per_s, prog_bar=True)
        self._window_start, self._window_step = now, step
        self._window_overhead = pl_module.overhead_seconds

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.fit_seconds = time.perf_counter() - self.fit_start
