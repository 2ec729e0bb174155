"""The LightningDataModule: corpus -> tokenizer -> token cache -> windows, wired for training.

The training stream is infinite and indexed: batch i is `batch_at(i, rank, world_size)`, so
resuming only needs the number of batches already consumed, which the checkpoint stores.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from sinklab.data.batches import SyntheticBatches, TextBatches
from sinklab.data.config import DataConfig
from sinklab.data.probe_set import ProbeSet, load_probe_set, save_probe_set
from sinklab.data.sources import load_documents, split_documents
from sinklab.data.synthetic import make_task
from sinklab.data.token_cache import TokenCache
from sinklab.data.tokenizer import build_tokenizer
from sinklab.errors import ConfigError

log = logging.getLogger(__name__)


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


class SinkDataModule(L.LightningDataModule):
    """Data for one run. After setup(): vocab_size, bos_id, eos_id, pad_id, tokenizer."""

    def __init__(self, cfg: DataConfig | Mapping[str, Any], run_dir: Path | None = None) -> None:
        super().__init__()
        self.cfg = cfg if isinstance(cfg, DataConfig) else DataConfig.from_dict(cfg)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._cursor = _Cursor()
        self._batches: TextBatches | SyntheticBatches | None = None
        self.tokenizer: Any = None
        self.vocab_size: int = 0
        self.bos_id: int | None = None
        self.eos_id: int | None = None
        self.pad_id: int | None = None
        self.cache_hit: bool | None = None  # True when the token cache was reused
        self.setup_seconds: float | None = None

    # --- building -------------------------------------------------------------------------
    def prepare_data(self) -> None:
        self._build()

    def setup(self, stage: str | None = None) -> None:
        self._build()

    def _build(self) -> None:
        if self._batches is not None:
            return
        started = time.perf_counter()
        cfg = self.cfg
        if cfg.source == "synthetic":
            task = make_task(cfg)
            self.tokenizer = task.tokenizer
            self.vocab_size, self.bos_id, self.eos_id, self.pad_id = (
                task.vocab_size,
                task.bos_id,
                None,
                None,
            )
            self._check_first_token()
            self._batches = SyntheticBatches(cfg, task)
        else:
            docs = load_documents(cfg)
            train, val = split_documents(docs, cfg.val_fraction, cfg.split_seed)
            tok = build_tokenizer(cfg, train, docs)
            self.tokenizer = tok
            self.vocab_size, self.bos_id, self.eos_id, self.pad_id = (
                tok.vocab_size,
                tok.bos_id,
                tok.eos_id,
                tok.pad_id,
            )
            if cfg.bos != "none" and tok.bos_id is None:
                raise ConfigError(
                    "data.bos", f"{cfg.bos!r} needs a BOS token, which this tokenizer lacks"
                )
            self._check_first_token()
            cache = TokenCache(cfg.cache_root(), tok, {"train": train, "val": val})
            self.cache_hit = cache.hit
            with_bos = cfg.bos == "document_start"
            files = {
                "train": cache.path("train", with_bos),
                "val": cache.path("val", with_bos),
                "val_plain": cache.path("val"),
            }
            self._batches = TextBatches(cfg, tok, files)
        self.setup_seconds = time.perf_counter() - started
        log.info("data ready in %.2fs (vocab %d)", self.setup_seconds, self.vocab_size)

    def _check_first_token(self) -> None:
        fid = self.cfg.first_token_id
        if self.cfg.first_token == "fixed" and fid is not None and fid >= self.vocab_size:
            raise ConfigError(
                "data.first_token_id", f"{fid} is outside the vocabulary (size {self.vocab_size})"
            )

    @property
    def batches(self) -> TextBatches | SyntheticBatches:
        self._build()
        assert self._batches is not None
        return self._batches

    # --- the indexed training stream -----------------------------------------------------
    @property
    def start_batch(self) -> int:
        return self._cursor.start_batch

    @start_batch.setter
    def start_batch(self, value: int) -> None:
        self._cursor.start_batch = int(value)

    def batch_at(self, index: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        """The exact training micro-batch `index` of `rank` (independent of the run length)."""
        return self.batches.batch(index, rank, world_size)

    def loss_tokens_per_batch(self) -> int:
        """Loss-bearing tokens per micro-batch, for comparing runs with different min_context per token.

        Exact for context masks; with a Bigram-Backcopy loss_on restriction it varies per batch,
        so this is the mean over the first 8 batches (count `batch["loss_mask"].sum()` for exact).
        """
        cfg = self.cfg
        if cfg.source == "synthetic" and cfg.synthetic.loss_on != "all":
            counts = [int(self.batch_at(i)["loss_mask"].sum()) for i in range(8)]
            return round(sum(counts) / len(counts))
        return cfg.batch_size * (cfg.context_end - cfg.min_context)

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
        return DataLoader(
            stream, batch_size=None, num_workers=self.cfg.num_workers, pin_memory=self._pin_memory()
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

    # --- probe set -----------------------------------------------------------------------
    def probe_set(self) -> ProbeSet:
        """The run's fixed probe windows: loaded from the run folder if saved, else built (and saved)."""
        if self.run_dir is not None and (self.run_dir / "probe" / "probe_set.npz").is_file():
            return load_probe_set(self.run_dir)
        probe = self.batches.probe()
        if self.run_dir is not None:
            save_probe_set(probe, self.run_dir)
        return probe
