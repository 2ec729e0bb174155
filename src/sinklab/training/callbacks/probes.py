"""The probe callback: measure sinks and massive activations on the run's fixed probe set at
every scheduled step, append tidy rows to `<run>/metrics/probes.parquet`, and log the
aggregate curves (and, on W&B, pictures) to the logger.

It calls the same `sinklab.analysis` functions as the reanalysis script, so a checkpoint
re-measured later gives the numbers logged here.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import lightning as L

from sinklab.analysis import MetricsConfig, logger_scalars
from sinklab.analysis.pipeline import measure_probe_set
from sinklab.analysis.records import append_rows, read_rows, tag_rows
from sinklab.atomic import atomic_write
from sinklab.data import ProbeSet
from sinklab.runs.checkpoints import checkpoint_name
from sinklab.runs.layout import RunLayout
from sinklab.training.config import ProbeScheduleConfig
from sinklab.training.schedule import is_scheduled


def drop_rows_after(table: Path, step: int) -> int:
    """Remove rows measured after `step` (atomically); returns how many were dropped.

    A run killed after its last checkpoint may have probed further; resuming from that
    checkpoint re-measures those steps, identically, so the old rows would be duplicates.
    """
    if not table.exists():
        return 0
    rows = read_rows(table)
    keep = rows[rows["step"] <= step]
    if len(keep) == len(rows):
        return 0
    atomic_write(table, lambda fh: keep.to_parquet(fh, index=False))
    return len(rows) - len(keep)


class ProbeCallback(L.Callback):
    """Probes at the scheduled steps. Put it before the checkpoint callback: at a step with
    both, the rows are on disk before the checkpoint, so a checkpoint always implies its probe."""

    def __init__(
        self,
        run_dir: Path,
        probe_set: ProbeSet,
        cfg: ProbeScheduleConfig,
        metrics_cfg: MetricsConfig,
        max_steps: int,
        run_id: str,
        config_hash: str,
        checkpoint_steps: set[int] | None = None,
    ) -> None:
        self.table = RunLayout(run_dir).probes_table
        self.probe_set = probe_set
        self.cfg = cfg
        self.metrics_cfg = metrics_cfg
        self.max_steps = max_steps
        self.run_id = run_id
        self.config_hash = config_hash
        self.checkpoint_steps = checkpoint_steps or set()
        self._last_step: int | None = None
        self.seconds = 0.0
        self.history: dict[int, dict[str, float]] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0:
            self._probe(trainer, pl_module)
        else:  # resumed: the probe runs before the checkpoint, so this step is already measured
            self._last_step = trainer.global_step
            if trainer.is_global_zero:
                drop_rows_after(self.table, trainer.global_step)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object
    ) -> None:
        step = trainer.global_step
        if step != self._last_step and is_scheduled(
            step, self.max_steps, self.cfg.log_spaced_until, self.cfg.every
        ):
            self._probe(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._last_step:
            self._probe(trainer, pl_module)

    def _probe(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        self._last_step = step
        if not trainer.is_global_zero:
            return
        start = time.perf_counter()
        rows, probe = measure_probe_set(
            pl_module.model,
            self.probe_set,
            self.metrics_cfg,
            batch_size=self.cfg.batch_size,
            device=pl_module.device,
        )
        tokens = pl_module.tokens_seen
        ckpt = checkpoint_name(step, tokens) if step in self.checkpoint_steps else ""
        rows = tag_rows(
            rows,
            run_id=self.run_id,
            step=step,
            tokens_seen=tokens,
            config_hash=self.config_hash,
            checkpoint=ckpt,
        )
        append_rows(self.table, rows)
        scalars = logger_scalars(rows)
        self.history[step] = scalars
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)
        if self.cfg.images:
            self._log_images(trainer, probe, step)
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        pl_module.overhead_seconds += elapsed

    def _log_images(self, trainer: L.Trainer, probe: Any, step: int) -> None:
        from lightning.pytorch.loggers import WandbLogger

        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        if not wandb_loggers:
            return
        from sinklab.reports.plots import attention_maps_image, head_averaged_patterns

        maps = head_averaged_patterns(probe)
        image = attention_maps_image(maps)
        caption = f"step {step}: head-averaged attention, layers 0-{len(maps) - 1} left to right"
        for lg in wandb_loggers:
            lg.log_image("probe/attention_maps", [image], step=step, caption=[caption])
