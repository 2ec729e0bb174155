"""Checkpoints: lean ones on Pythia's log-spaced schedule, the full training state in `last.ckpt`.

Two kinds, because analysis needs many and resume needs one:
- `step*-tokens*.ckpt` at steps 0, 1, 2, 4, ..., then every `every`: weights and metadata only
  (Lightning's `weights_only=True` dump: `state_dict`, `hyper_parameters`, `sinklab`, loops),
  a third of the full size with AdamW. Reanalysis reads them; resume refuses them.
- `last.ckpt` every `full_every` steps and at the end: the full state (optimizer, scheduler,
  loops, callbacks) for an exact resume. It is copied to memory on the training thread and
  written by a background thread, so it blocks a step for a memory copy, not a disk write.

Every file is written to a temporary name in the same folder and renamed into place, so a
SIGKILL mid-write leaves the previous file intact.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from sinklab.atomic import commit, temp_name
from sinklab.runs.checkpoints import checkpoint_name
from sinklab.runs.layout import LAST_CHECKPOINT
from sinklab.runs.schedule import is_scheduled
from sinklab.training.config import CheckpointConfig


class LogSpacedCheckpoint(L.Callback):
    """Lean checkpoints on the log-spaced schedule; the full state in `last.ckpt`."""

    def __init__(self, dirpath: Path, cfg: CheckpointConfig, max_steps: int) -> None:
        self.dirpath = Path(dirpath)
        self.cfg = cfg
        self.max_steps = max_steps
        self._last_saved: int | None = None
        self._last_full: int | None = None
        self._writer = BackgroundWriter()
        self.seconds = 0.0  # time the training loop was blocked by checkpointing
        self.lean_seconds = 0.0
        self.full_snapshot_seconds = 0.0
        self.saved: list[Path] = []

    @property
    def last_full_step(self) -> int | None:
        """The step `last.ckpt` holds (None: none written): where a resume starts."""
        return self._last_full if self.cfg.save_last else None

    @property
    def full_write_seconds(self) -> float:
        """Time the background thread spent writing full-state files (not blocking steps)."""
        return self._writer.seconds

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0 and trainer.ckpt_path is None:  # a resume may start at 0
            self._save_lean(trainer, pl_module)
            self._save_full(trainer)
        else:  # resumed: the step we resumed from is already on disk
            self._last_saved = self._last_full = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object
    ) -> None:
        step = trainer.global_step
        if step != self._last_saved and is_scheduled(
            step, self.max_steps, self.cfg.log_spaced_until, self.cfg.every
        ):
            self._save_lean(trainer, pl_module)
        if step != self._last_full and step % self.cfg.full_every == 0:
            self._save_full(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._last_saved:
            self._save_lean(trainer, pl_module)
        if trainer.global_step != self._last_full:
            self._save_full(trainer)
        self._wait(pl_module)

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        # A stopped run (a NaN, Ctrl-C) keeps the full checkpoint already in flight.
        self._writer.wait(raise_error=False)

    def _save_lean(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        start = time.perf_counter()
        final = self.dirpath / checkpoint_name(trainer.global_step, pl_module.tokens_seen)
        atomic_save_checkpoint(trainer, final, weights_only=True)
        self._last_saved = trainer.global_step
        self.saved.append(final)
        self._account(pl_module, start, "lean_seconds")

    def _save_full(self, trainer: L.Trainer) -> None:
        if not self.cfg.save_last:
            return
        pl_module = trainer.lightning_module
        start = time.perf_counter()
        self._writer.wait()  # one write in flight: its error surfaces here, on the training thread
        checkpoint = trainer._checkpoint_connector.dump_checkpoint(weights_only=False)
        if trainer.is_global_zero:
            snapshot = copy_tensors(checkpoint)  # the next step updates the live tensors in place
            io = trainer.strategy.checkpoint_io
            self._writer.submit(lambda: atomic_save(io, snapshot, self.dirpath / LAST_CHECKPOINT))
        self._last_full = trainer.global_step
        self._account(pl_module, start, "full_snapshot_seconds")

    def _wait(self, pl_module: L.LightningModule) -> None:
        start = time.perf_counter()
        self._writer.wait()
        self._account(pl_module, start, "full_snapshot_seconds")

    def _account(self, pl_module: L.LightningModule, start: float, kind: str) -> None:
        elapsed = time.perf_counter() - start
        setattr(self, kind, getattr(self, kind) + elapsed)
        self.seconds += elapsed
        pl_module.overhead_seconds += elapsed


class BackgroundWriter:
    """One daemon thread per write, at most one in flight; a failed write re-raises its error
    (a full disk: OSError) on the training thread at the next `wait`."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.seconds = 0.0

    def submit(self, write: Any) -> None:
        self.wait()

        def run() -> None:
            start = time.perf_counter()
            try:
                write()
            except BaseException as err:  # noqa: BLE001 - re-raised on the training thread
                self._error = err
            self.seconds += time.perf_counter() - start

        self._thread = threading.Thread(target=run, name="sinklab-checkpoint", daemon=True)
        self._thread.start()

    def wait(self, raise_error: bool = True) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None and raise_error:
            raise error


def copy_tensors(obj: Any) -> Any:
    """A copy of a checkpoint dict whose tensors are detached CPU copies (other values shared)."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return type(obj)((k, copy_tensors(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(copy_tensors(v) for v in obj)
    return obj


def atomic_save(io: Any, checkpoint: dict[str, Any], path: Path) -> None:
    """`io.save_checkpoint` into the temporary name, then rename; a failure removes the temp."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        io.save_checkpoint(checkpoint, tmp)
        commit(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_save_checkpoint(trainer: L.Trainer, path: Path, weights_only: bool = False) -> None:
    """`trainer.save_checkpoint` into a temporary name, then an atomic rename on rank 0.

    A kill mid-write leaves only a torn `.<name>.tmp`; a failed write (a full disk) removes it
    and re-raises, so the checkpoints already on disk, and `last.ckpt`, stay as they were.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        # Plain tensors and values, so it loads with torch.load(weights_only=True). Every rank
        # must call this (Lightning's contract for distributed strategies); rank 0 writes.
        trainer.save_checkpoint(tmp, weights_only=weights_only)
        if trainer.is_global_zero:
            commit(tmp, path)
    except BaseException:
        if trainer.is_global_zero:
            tmp.unlink(missing_ok=True)
        raise
    trainer.strategy.barrier("sinklab_checkpoint")
