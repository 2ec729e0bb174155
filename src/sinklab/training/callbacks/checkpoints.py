"""Checkpoints on Pythia's log-spaced schedule, written atomically (temp file, then rename)."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import lightning as L

from sinklab.atomic import commit, temp_name
from sinklab.runs.checkpoints import checkpoint_name
from sinklab.runs.layout import LAST_CHECKPOINT
from sinklab.training.config import CheckpointConfig
from sinklab.training.schedule import is_scheduled


class LogSpacedCheckpoint(L.Callback):
    """Saves at steps 0, 1, 2, 4, ..., `log_spaced_until`, then every `every` steps, plus
    `last.ckpt`. A SIGKILL mid-write leaves the previous files intact: each file is written to
    a temporary name in the same folder and renamed into place."""

    def __init__(self, dirpath: Path, cfg: CheckpointConfig, max_steps: int) -> None:
        self.dirpath = Path(dirpath)
        self.cfg = cfg
        self.max_steps = max_steps
        self._last_saved: int | None = None
        self.seconds = 0.0
        self.saved: list[Path] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0:
            self._save(trainer, pl_module)
        else:  # resumed: the step we resumed from is already on disk
            self._last_saved = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object
    ) -> None:
        step = trainer.global_step
        if step != self._last_saved and is_scheduled(
            step, self.max_steps, self.cfg.log_spaced_until, self.cfg.every
        ):
            self._save(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._last_saved:
            self._save(trainer, pl_module)

    def _save(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        start = time.perf_counter()
        step = trainer.global_step
        final = self.dirpath / checkpoint_name(step, pl_module.tokens_seen)
        atomic_save_checkpoint(trainer, final)
        if self.cfg.save_last:
            atomic_link(trainer, final, self.dirpath / LAST_CHECKPOINT)
        self._last_saved = step
        self.saved.append(final)
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        pl_module.overhead_seconds += elapsed


def atomic_save_checkpoint(trainer: L.Trainer, path: Path) -> None:
    """`trainer.save_checkpoint` into a temporary name, then an atomic rename on rank 0.

    A kill mid-write leaves only a torn `.<name>.tmp`; a failed write (a full disk) removes it
    and re-raises, so the checkpoints already on disk, and `last.ckpt`, stay as they were.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        # Full state (optimizer, loops, data position) for exact resume; still plain tensors and
        # values, so it loads with torch.load(weights_only=True). Every rank must call this.
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            commit(tmp, path)
    except BaseException:
        if trainer.is_global_zero:
            tmp.unlink(missing_ok=True)
        raise
    trainer.strategy.barrier("sinklab_checkpoint")


def atomic_link(trainer: L.Trainer, source: Path, link: Path) -> None:
    """Point `link` at `source` (a hard link when the filesystem allows, else a copy), atomically."""
    if not trainer.is_global_zero:
        return
    tmp = temp_name(link)
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        commit(tmp, link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
