"""The LightningDataModule: `RunData` (corpus -> tokenizer -> token cache -> windows) wired
into data loaders for training.

The training stream is infinite and indexed: batch i is `batch_at(i, rank, world_size)`, so
resuming only needs the number of batches already consumed, which the checkpoint stores.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from sinklab.data.batches import SyntheticBatches, TextBatches
from sinklab.data.config import DataConfig
from sinklab.data.loader import CompactLoader
from sinklab.data.run_data import RunData


class _Cursor:
    """Shared by the datamodule and its dataset, so a restored start is seen at iteration time."""

    def __init__(self) -> None:
        self.start_batch = 0


class _TrainStream(IterableDataset):
    """Yields batch_at(start), batch_at(start + 1), ... forever; workers take turns in order."""

    def __init__(
        self, batches: TextBatches | SyntheticBatches, cursor: _Cursor, rank: int, world_size: int
    ) -> None:
        self.batches = batches
        self.cursor = cursor
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        info = get_worker_info()
        worker, n_workers = (0, 1) if info is None else (info.id, info.num_workers)
        # DataLoader reads workers round-robin, so this interleaving keeps the global order.
        index = self.cursor.start_batch + worker
        while True:
            yield self.batches.batch(index, self.rank, self.world_size)
            index += n_workers


class SinkDataModule(RunData, L.LightningDataModule):
    """`RunData` served as Lightning data loaders, with the data position in the checkpoint."""

    def __init__(self, cfg: DataConfig | Mapping[str, Any], run_dir: Path | None = None) -> None:
        L.LightningDataModule.__init__(self)
        RunData.__init__(self, cfg, run_dir)
        self._cursor = _Cursor()

    def prepare_data(self) -> None:
        self.build()

    def setup(self, stage: str | None = None) -> None:
        self.build()

    # --- the indexed training stream -----------------------------------------------------
    @property
    def start_batch(self) -> int:
        return self._cursor.start_batch

    @start_batch.setter
    def start_batch(self, value: int) -> None:
        self._cursor.start_batch = int(value)

    def _rank_world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 0, 1
        return int(trainer.global_rank), int(trainer.world_size)

    def _pin_memory(self) -> bool:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return False
        from lightning.pytorch.accelerators import CUDAAccelerator

        return isinstance(trainer.accelerator, CUDAAccelerator)

    def train_dataloader(self) -> DataLoader:
        rank, world = self._rank_world()
        if self.cfg.num_workers > 0:  # workers never tokenize; silence the fork warning
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        stream = _TrainStream(self.batches, self._cursor, rank, world)
        # Workers send each batch as compact numpy arrays (one pickled message), not one
        # shared-memory tensor each: 2.5-3x the tokens/s with 2 workers (docs/data.md).
        return CompactLoader(
            stream, num_workers=self.cfg.num_workers, pin_memory=self._pin_memory()
        )

    def val_dataloader(self) -> DataLoader:
        return DataLoader(
            self.batches.val_batches(),
            batch_size=None,
            shuffle=False,
            num_workers=0,
            pin_memory=self._pin_memory(),
        )

    # --- checkpoint state ----------------------------------------------------------------
    def state_dict(self) -> dict[str, int]:
        """Batches consumed per rank, from the trainer's step (prefetching makes yields unreliable)."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return {"batches_seen": int(trainer.global_step) * int(trainer.accumulate_grad_batches)}
        return {"batches_seen": self.start_batch}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.start_batch = int(state_dict.get("batches_seen", 0))
