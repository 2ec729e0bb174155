"""The data of one run, without Lightning: corpus -> tokenizer -> token cache -> batches.

`RunData` builds (or loads from the caches) everything a run reads, and answers "which
tokens are training batch i" and "which windows are the probe set". The Lightning data
module (`sinklab.training.datamodule`) only wraps it in data loaders; `make data`, the bench
and the tests use it directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from sinklab.atomic import atomic_write
from sinklab.data import shards
from sinklab.data.batches import ShardBatches, SyntheticBatches, TextBatches
from sinklab.data.budget import Budget, check_budget
from sinklab.data.config import DataConfig
from sinklab.data.probe_set import ProbeSet, load_probe_set, save_probe_set
from sinklab.data.sources import SplitCounts, load_documents, split_documents, split_warning
from sinklab.data.synthetic import make_task
from sinklab.data.token_cache import TokenCache
from sinklab.data.tokenizer import build_tokenizer, shard_tokenizer
from sinklab.errors import ConfigError
from sinklab.runs.layout import RunLayout

log = logging.getLogger(__name__)

# Calibration batches of the W8A8 evaluation are training batches from this index on: drawn by
# the training sampler (the training distribution) but at indices no run reaches.
CALIB_INDEX = 2**40


class RunData:
    """Data for one run. After `build()`: vocab_size, bos_id, eos_id, pad_id, tokenizer."""

    def __init__(self, cfg: DataConfig | Mapping[str, Any], run_dir: Path | None = None) -> None:
        self.cfg = cfg if isinstance(cfg, DataConfig) else DataConfig.from_dict(cfg)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._batches: TextBatches | SyntheticBatches | None = None
        self.tokenizer: Any = None
        self.vocab_size: int = 0
        self.bos_id: int | None = None
        self.eos_id: int | None = None
        self.pad_id: int | None = None
        self.cache_hit: bool | None = None  # True when the token cache was reused
        self.setup_seconds: float | None = None
        self.split: SplitCounts | None = None  # in-memory text: documents and tokens per split
        self.progress = True  # storage=shards: a progress bar while preparing

    def build(self) -> None:
        """Build once: corpus, tokenizer and token cache, or the synthetic task."""
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
                task.end_id,  # None unless data.end_token
                None,
            )
            self._check_first_token()
            self._batches = SyntheticBatches(cfg, task)
        elif cfg.storage == "shards":
            self._build_shards()
        else:
            docs = load_documents(cfg)
            train, val = split_documents(docs, cfg.val_fraction, cfg.split_seed)
            tok = build_tokenizer(cfg, train, docs)
            self._set_tokenizer(tok)
            cache = TokenCache(cfg.cache_root(), tok, {"train": train, "val": val})
            self.cache_hit = cache.hit
            self.split = SplitCounts(
                len(train), len(val), cache.n_tokens("train"), cache.n_tokens("val")
            )
            with_bos = cfg.bos == "document_start"
            files = {
                "train": cache.path("train", with_bos),
                "val": cache.path("val", with_bos),
                "val_plain": cache.path("val"),
            }
            self._batches = TextBatches(cfg, tok, files)
        self.setup_seconds = time.perf_counter() - started
        log.info(self.ready_line())
        warning = split_warning(self.split, cfg) if self.split is not None else None
        if warning:
            log.warning(warning)

    def ready_line(self) -> str:
        """What was built, for the log: the time and vocabulary, and the corpus and its split
        (documents and tokens) for in-memory text, the token counts for shards."""
        head = f"data ready in {self.setup_seconds or 0.0:.2f}s (vocab {self.vocab_size:,})"
        if self.split is not None:
            return f"{head}: {self.split.line(self.cfg.val_fraction)}"
        if isinstance(self._batches, ShardBatches):
            val = len(np.load(self._batches.files["val"], mmap_mode="r"))
            return f"{head}: train {self._batches.train_tokens:,} tokens, validation {val:,} tokens"
        return f"{head}: synthetic {self.cfg.synthetic.kind}, generated (never repeats)"

    def _build_shards(self) -> None:
        """storage=shards: tokenizer and token shards, prepared (or resumed) once, then reused
        after a check of names and sizes only."""
        cfg = self.cfg
        tok = shard_tokenizer(cfg)
        self._set_tokenizer(tok)
        report = shards.prepare(cfg, tok, progress=self.progress)
        self.cache_hit = report.hit
        # WindowSpec.window_tokens: one block is one window
        block = cfg.seq_len if cfg.bos == "every_window" else cfg.seq_len + 1
        shard_set = shards.ShardSet(report.folder, block)
        val = report.folder / "val.npy"
        self._batches = ShardBatches(cfg, tok, shard_set, {"val": val, "val_plain": val})

    def _set_tokenizer(self, tok: Any) -> None:
        self.tokenizer = tok
        self.vocab_size, self.bos_id, self.eos_id, self.pad_id = (
            tok.vocab_size,
            tok.bos_id,
            tok.eos_id,
            tok.pad_id,
        )
        if self.cfg.bos != "none" and tok.bos_id is None:
            raise ConfigError(
                "data.bos", f"{self.cfg.bos!r} needs a BOS token, which this tokenizer lacks"
            )
        self._check_first_token()

    def budget(self, steps: int, tokens_per_step: int, model_vocab: int | None = None) -> Budget:
        """The run's token budget against the training split, printed by the trainer; refused
        in one line above data.max_epochs, or when the model's vocabulary is too small."""
        if model_vocab is not None and model_vocab < self.vocab_size:
            raise ConfigError(
                "model.vocab_size",
                f"{model_vocab} is smaller than the tokenizer's vocabulary ({self.vocab_size}); "
                "raise it or leave it null (the tokenizer's size)",
            )
        corpus = getattr(self.batches, "train_tokens", None)
        return check_budget(steps, tokens_per_step, corpus, self.cfg.max_epochs)

    def _check_first_token(self) -> None:
        fid = self.cfg.first_token_id
        if self.cfg.first_token == "fixed" and fid is not None and fid >= self.vocab_size:
            raise ConfigError(
                "data.first_token_id", f"{fid} is outside the vocabulary (size {self.vocab_size})"
            )

    @property
    def batches(self) -> TextBatches | SyntheticBatches:
        self.build()
        assert self._batches is not None
        return self._batches

    def batch_at(self, index: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        """The exact training micro-batch `index` of `rank` (independent of the run length)."""
        return self.batches.batch(index, rank, world_size)

    def loss_tokens_per_batch(self) -> int:
        """Loss-bearing tokens per micro-batch, for comparing runs with different min_context per token.

        Exact for context masks; with a Bigram-Backcopy loss_on restriction, or BERT's masking
        (objective mlm: the chosen ~15 % only), it varies per batch, so this is the mean over
        the first 8 batches (count `batch["loss_mask"].sum()` for exact).
        """
        cfg = self.cfg
        varies = cfg.objective == "mlm" or (
            cfg.source == "synthetic" and cfg.synthetic.loss_on != "all"
        )
        if varies:
            counts = [int(self.batch_at(i)["loss_mask"].sum()) for i in range(8)]
            return round(sum(counts) / len(counts))
        return cfg.batch_size * (cfg.context_end - cfg.min_context)

    def probe_set(self) -> ProbeSet:
        """The run's fixed probe windows: loaded from the run folder if saved, else built (and saved)."""
        if self.run_dir is not None and RunLayout(self.run_dir).probe_ids.is_file():
            return load_probe_set(self.run_dir)
        probe = self.batches.probe()
        if self.run_dir is not None:
            save_probe_set(probe, self.run_dir)
        return probe

    def stream_ids(self, length: int) -> torch.Tensor:
        """The streaming evaluation's held-out stream [length, or fewer when the validation
        split is shorter] (`batches.stream`): loaded from
        the run folder if saved, else built and saved there (atomically), so a resumed run and
        every later reanalysis measure the same tokens."""
        path = RunLayout(self.run_dir).stream_ids if self.run_dir is not None else None
        if path is not None and path.is_file():
            ids = load_stream_ids(self.run_dir)
            if len(ids) > length:  # shorter: a validation split shorter than the stream
                raise ConfigError(
                    "callbacks.probe.stream.stream_len",
                    f"the run's saved stream ({path}) has {len(ids)} tokens, not {length}; "
                    "keep the run's stream settings",
                )
            return ids
        ids = torch.from_numpy(np.ascontiguousarray(self.batches.stream(length), dtype=np.int64))
        if self.run_dir is not None:
            save_stream_ids(ids, self.run_dir)
        return ids

    def quant_ids(self, eval_windows: int, calibration_batches: int) -> QuantIds:
        """The W8A8 evaluation's inputs, fixed for the run: the first `eval_windows` validation
        windows (all of them when the split has fewer, as the stream takes a shorter stream)
        and `calibration_batches` training batches from `CALIB_INDEX` on (never trained on).
        Loaded from the run folder if saved, else built and saved there (atomically)."""
        path = RunLayout(self.run_dir).quant_ids if self.run_dir is not None else None
        val = torch.cat([b["input_ids"] for b in self.batches.val_batches()])
        n = min(eval_windows, len(val))
        if n < 1:
            raise ConfigError(
                "callbacks.probe.quant.eval_windows",
                "the validation split has no windows; raise data.val_batches",
            )
        if path is not None and path.is_file():
            saved = load_quant_ids(self.run_dir)
            if saved.eval_ids.shape[0] != n or len(saved.calib) != calibration_batches:
                raise ConfigError(
                    "callbacks.probe.quant.eval_windows",
                    f"the run's saved windows ({path}) are {saved.eval_ids.shape[0]} windows and "
                    f"{len(saved.calib)} calibration batches; keep the run's quant settings",
                )
            return saved
        if n < eval_windows:
            log.info(
                "W8A8 evaluation on all %d validation windows (callbacks.probe.quant."
                "eval_windows=%d; raise data.val_batches for more)",
                n,
                eval_windows,
            )
        calib = [self.batch_at(CALIB_INDEX + k)["input_ids"] for k in range(calibration_batches)]
        bos = torch.tensor(-1 if self.bos_id is None else self.bos_id)
        ids = QuantIds(val[:n].clone(), torch.stack(calib), bos)
        if self.run_dir is not None:
            save_quant_ids(ids, self.run_dir)
        return ids


class QuantIds(NamedTuple):
    """The W8A8 evaluation's windows [N, T], calibration batches [n, B, T] and the tokenizer's
    BOS id (a 0-d tensor, -1: none; the prefixes start from it), all int64."""

    eval_ids: torch.Tensor
    calib: torch.Tensor
    bos: torch.Tensor

    @property
    def bos_id(self) -> int | None:
        return None if int(self.bos) < 0 else int(self.bos)


def save_quant_ids(ids: QuantIds, run_dir: Path) -> Path:
    """Write the W8A8 evaluation's inputs as `<run_dir>/probe/quant_ids.npz` (atomically)."""
    path = RunLayout(run_dir).quant_ids
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in ids._asdict().items()}
    atomic_write(path, lambda fh: np.savez(fh, **arrays))
    return path


def load_quant_ids(run_dir: Path) -> QuantIds:
    """A run's saved W8A8 evaluation inputs, never unpickled."""
    path = RunLayout(run_dir).quant_ids
    if not path.is_file():
        raise FileNotFoundError(f"no W8A8 evaluation windows at {path}")
    with np.load(path, allow_pickle=False) as z:
        return QuantIds(*(torch.from_numpy(z[k].astype(np.int64)) for k in QuantIds._fields))


def save_stream_ids(ids: torch.Tensor | np.ndarray, run_dir: Path) -> Path:
    """Write an evaluation stream [T] as `<run_dir>/probe/stream_ids.npy` (atomically)."""
    path = RunLayout(run_dir).stream_ids
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.asarray(ids, dtype=np.int64)
    atomic_write(path, lambda fh: np.save(fh, array, allow_pickle=False))
    return path


def load_stream_ids(run_dir: Path) -> torch.Tensor:
    """A run's saved evaluation stream [T] (int64), never unpickled."""
    path = RunLayout(run_dir).stream_ids
    if not path.is_file():
        raise FileNotFoundError(f"no evaluation stream at {path}")
    return torch.from_numpy(np.load(path, allow_pickle=False).astype(np.int64))
