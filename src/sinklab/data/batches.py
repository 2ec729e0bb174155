"""Batch makers: turn (batch index, rank, world size) into a batch, for real text and for synthetic data.

Both expose the same three things the datamodule needs: the training batch at any index,
the fixed validation batches, and the probe set. Keeping them free of Lightning makes the
data order testable on its own and picklable into DataLoader workers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from sinklab.data import sampling
from sinklab.data.config import DataConfig
from sinklab.data.probe_set import ProbeSet
from sinklab.data.shards import ShardSet
from sinklab.data.synthetic import SyntheticTask
from sinklab.data.tokenizer import Tokenizer
from sinklab.data.windows import (
    MaskSpec,
    WindowSpec,
    context_mask,
    end_windows,
    make_batch,
    mask_batch,
    replace_first_token,
    to_batch,
)
from sinklab.errors import ConfigError

log = logging.getLogger(__name__)

_VAL_FIRST_TOKEN = 1000  # stream tag for the validation set's first-token draws
_EVAL_STREAM = 1001  # seed tag of the synthetic streaming-evaluation stream (not a training tag)
_MLM_TRAIN, _MLM_VAL = 1002, 1003  # seed tags of the masked-LM draws (training, validation)


def window_spec(
    cfg: DataConfig,
    vocab_size: int,
    bos_id: int | None,
    special_ids: tuple[int, ...],
    end_id: int | None = None,
    mask_id: int | None = None,
) -> WindowSpec:
    """The windows of `cfg`; `end_id` is the end token's id under data.end_token.

    Under objective=mlm the mask token joins the special ids, so `first_token=random` never
    draws it: a window opening with the mask would show the model a mask where nothing was
    hidden. Causal runs keep their draws unchanged."""
    if cfg.is_mlm and mask_id is not None and mask_id not in special_ids:
        special_ids = (*special_ids, mask_id)
    return WindowSpec(
        seq_len=cfg.seq_len,
        bos=cfg.bos,
        bos_id=bos_id,
        min_context=cfg.min_context,
        context_end=cfg.context_end,
        first_token=cfg.first_token,
        first_token_id=cfg.first_token_id,
        vocab_size=vocab_size,
        special_ids=special_ids,
        end_id=end_id,
    )


def end_id_of(cfg: DataConfig, eos_id: int | None) -> int | None:
    """The end token of data.end_token (the tokenizer's EOS; None when off); a tokenizer
    without EOS cannot end windows, a one-line ConfigError."""
    if not cfg.end_token:
        return None
    if eos_id is None:
        raise ConfigError(
            "data.end_token", "the tokenizer has no EOS token to end every window with"
        )
    return eos_id


def mask_spec(
    cfg: DataConfig, vocab_size: int, mask_id: int | None, special_ids: tuple[int, ...]
) -> MaskSpec | None:
    """BERT's masking for objective=mlm (None for clm); `build_tokenizer`/`make_task` made
    sure an mlm vocabulary has a mask token."""
    if not cfg.is_mlm:
        return None
    if mask_id is None:
        raise ConfigError("data.objective", "mlm needs a tokenizer with a mask token")
    return MaskSpec(
        mask_id=mask_id,
        vocab_size=vocab_size,
        special_ids=special_ids,
        probability=cfg.mlm_probability,
        mask_frac=cfg.mlm_mask_frac,
        random_frac=cfg.mlm_random_frac,
    )


class TextBatches:
    """Windows of the cached token streams of a real-text corpus."""

    def __init__(
        self, cfg: DataConfig, tokenizer: Tokenizer, stream_files: dict[str, Path]
    ) -> None:
        self.cfg = cfg
        self.tokenizer = tokenizer
        specials = tuple(
            i for i in (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) if i is not None
        )
        # data.end_token: EOS, already special (never masked, never a random replacement)
        self.end_id = end_id_of(cfg, tokenizer.eos_id)
        mask_id = getattr(tokenizer, "mask_id", None)
        self.spec = window_spec(
            cfg, tokenizer.vocab_size, tokenizer.bos_id, specials, self.end_id, mask_id
        )
        self.mask = mask_spec(cfg, tokenizer.vocab_size, mask_id, specials)
        self.files = stream_files  # train/val (BOS variant under document_start), plus val_plain
        self._arrays: dict[str, np.ndarray] = {}
        self._setup_train()
        self._check_val()

    def _setup_train(self) -> None:
        """The training stream's window sampler (shards: ShardBatches overrides it)."""
        cfg = self.cfg
        train_len = len(self._stream("train"))
        if train_len < self.spec.window_tokens:
            raise ConfigError(
                "data.seq_len",
                f"{cfg.seq_len} needs {self.spec.window_tokens} tokens per "
                f"window but the training split has only {train_len}",
            )
        self.sampler = sampling.WindowSampler(
            train_len, self.spec.window_tokens, cfg.seq_len, cfg.seed
        )

    @property
    def train_tokens(self) -> int:
        """Tokens of the training split (one epoch), for the token budget."""
        return len(self._stream("train"))

    def _check_val(self) -> None:
        val_len = len(self._stream("val"))
        if val_len < self.spec.window_tokens:
            key, fix = (
                ("data.shards.val_documents", "raise it")
                if self.cfg.storage == "shards"
                else ("data.val_fraction", "raise val_fraction")
            )
            raise ConfigError(
                key,
                f"the validation split has {val_len} tokens, fewer than one "
                f"window ({self.spec.window_tokens}); {fix} or lower seq_len",
            )

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_arrays"] = {}  # workers reopen the memmaps instead of copying them
        return state

    def _stream(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            self._arrays[name] = np.load(self.files[name], mmap_mode="r")
        return self._arrays[name]

    def batch(self, index: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        g = sampling.global_batch(index, rank, world_size)
        b = self.cfg.batch_size
        starts = self.sampler.starts(g * b, b)
        gen = sampling.rng(self.cfg.seed, sampling.TAG_FIRST_TOKEN, g)
        batch = make_batch(self._stream("train"), starts, self.spec, gen, self.tokenizer.pad_id)
        return mask_batch(batch, self.mask, sampling.rng(self.cfg.seed, _MLM_TRAIN, g))

    def val_batches(self) -> list[dict[str, torch.Tensor]]:
        cfg = self.cfg
        stream = self._stream("val")
        starts = sampling.evenly_spaced(
            len(stream), self.spec.window_tokens, cfg.val_batches * cfg.batch_size
        )
        gen = sampling.rng(cfg.split_seed, _VAL_FIRST_TOKEN)
        return [
            mask_batch(
                make_batch(stream, chunk, self.spec, gen, self.tokenizer.pad_id),
                self.mask,
                sampling.rng(cfg.split_seed, _MLM_VAL, j),
            )
            for j, chunk in enumerate(np.split(starts, cfg.val_batches))
        ]

    def probe(self) -> ProbeSet:
        """Evenly spaced windows of the validation documents; BOS first if the probe uses BOS,
        the end token last under data.end_token (in place of the window's last stream token)."""
        cfg = self.cfg
        has_bos = cfg.probe_has_bos
        bos = self.tokenizer.bos_id
        if has_bos and bos is None:
            raise ConfigError(
                "data.probe.bos", "the tokenizer has no BOS token; use probe.bos none"
            )
        t = cfg.probe.seq_len
        body = t - 1 if has_bos else t
        stream = self._stream("val_plain")
        if len(stream) < body:
            raise ConfigError(
                "data.probe.seq_len",
                f"{t} is longer than the validation split ({len(stream)} tokens)",
            )
        starts = sampling.evenly_spaced(len(stream), body, cfg.probe.n_windows)
        ids = np.asarray(stream[starts[:, None] + np.arange(body)], dtype=np.int64)
        if has_bos:
            ids = np.concatenate([np.full((len(starts), 1), bos, dtype=np.int64), ids], axis=1)
        ids = end_windows(ids, self.end_id)
        text = [self.tokenizer.decode(row.tolist()) for row in ids]
        return ProbeSet(
            input_ids=torch.from_numpy(ids), text=text, trigger_mask=None, has_bos=has_bos
        )

    def stream(self, length: int) -> np.ndarray:
        """The streaming evaluation's tokens [length, or the whole split when it is shorter]:
        the validation documents end to end (`doc EOS doc EOS ...`) from the split's start. BOS first when training uses BOS;
        under `document_start` also at every document start, as training saw them. One stream,
        not windows: no end token (the evaluation is causal-only, data.end_token mlm-only)."""
        cfg = self.cfg
        if cfg.bos == "document_start":
            stream, body, bos = self._stream("val"), length, None  # starts with BOS already
        else:
            stream, body = self._stream("val_plain"), length - int(cfg.uses_bos)
            bos = self.tokenizer.bos_id if cfg.uses_bos else None
        if len(stream) < body:  # a small corpus: the whole split, the stream's T says so
            log.warning(
                "the validation split has %d tokens, fewer than the %d-token evaluation stream; "
                "streaming all of it",
                len(stream),
                length,
            )
        ids = np.asarray(stream[:body], dtype=np.int64)
        return ids if bos is None else np.concatenate([np.array([bos], dtype=np.int64), ids])


class ShardBatches(TextBatches):
    """Training windows from token shards (storage=shards): block `k` of the shard set is
    window `k`; validation, probe and stream read the small val.npy as TextBatches does."""

    def __init__(
        self, cfg: DataConfig, tokenizer: Tokenizer, shards: ShardSet, val_files: dict[str, Path]
    ) -> None:
        self.shards = shards
        super().__init__(cfg, tokenizer, val_files)

    def _setup_train(self) -> None:
        if self.shards.n_blocks < 1:
            raise ConfigError(
                "data.seq_len",
                f"{self.cfg.seq_len} needs {self.spec.window_tokens} tokens per window but the "
                f"training shards hold only {self.shards.n_tokens:,} tokens (in "
                f"{len(self.shards.files)} shards)",
            )
        self.sampler = sampling.BlockSampler(self.shards.n_blocks, self.cfg.seed)

    @property
    def train_tokens(self) -> int:
        """Tokens one epoch reads: every full window of every shard."""
        return self.shards.n_blocks * self.shards.block

    def batch(self, index: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        g = sampling.global_batch(index, rank, world_size)
        b, w = self.cfg.batch_size, self.spec.window_tokens
        rows = self.shards.blocks(self.sampler.blocks(g * b, b))
        # the windows end to end are a stream whose windows start at 0, w, 2w ...: the same
        # cutting, first-token and masking code as the in-memory path
        starts = np.arange(b, dtype=np.int64) * w
        gen = sampling.rng(self.cfg.seed, sampling.TAG_FIRST_TOKEN, g)
        batch = make_batch(rows.reshape(-1), starts, self.spec, gen, self.tokenizer.pad_id)
        return mask_batch(batch, self.mask, sampling.rng(self.cfg.seed, _MLM_TRAIN, g))


class SyntheticBatches:
    """Sequences generated on the fly from (seed, batch index); one sequence is one window."""

    def __init__(self, cfg: DataConfig, task: SyntheticTask) -> None:
        self.cfg = cfg
        self.task = task
        self.bos = cfg.uses_bos
        # data.end_token: the task's own end token, special like BOS (off: BOS alone, as ever)
        self.end_id = task.end_id if cfg.end_token else None
        specials = (task.bos_id,) if self.end_id is None else (task.bos_id, self.end_id)
        self.spec = window_spec(
            cfg, task.vocab_size, task.bos_id, specials, self.end_id, task.mask_id
        )
        self.mask = mask_spec(cfg, task.vocab_size, task.mask_id, specials)

    def _batch(
        self, gen: np.random.Generator, first_gen: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        seqs = self.task.sample(gen, cfg.batch_size, cfg.seq_len + 1, bos=self.bos)
        inputs, targets = end_windows(seqs[:, :-1], self.end_id), seqs[:, 1:]
        mask = context_mask(cfg.batch_size, self.spec)
        if cfg.synthetic.loss_on != "all":
            trig = self.task.is_trigger(inputs)
            mask &= trig if cfg.synthetic.loss_on == "trigger" else ~trig
        inputs = replace_first_token(inputs, self.spec, first_gen)
        return to_batch(inputs, targets, mask)

    def batch(self, index: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        g = sampling.global_batch(index, rank, world_size)
        batch = self._batch(
            sampling.rng(self.cfg.seed, sampling.TAG_SYNTHETIC, g),
            sampling.rng(self.cfg.seed, sampling.TAG_FIRST_TOKEN, g),
        )
        return mask_batch(batch, self.mask, sampling.rng(self.cfg.seed, _MLM_TRAIN, g))

    def val_batches(self) -> list[dict[str, torch.Tensor]]:
        s = self.cfg.split_seed
        return [
            mask_batch(
                self._batch(
                    sampling.rng(s, sampling.TAG_SYNTHETIC_VAL, j),
                    sampling.rng(s, _VAL_FIRST_TOKEN, j),
                ),
                self.mask,
                sampling.rng(s, _MLM_VAL, j),
            )
            for j in range(self.cfg.val_batches)
        ]

    def probe(self) -> ProbeSet:
        """Probe sequences from their own seed stream; triggers marked for Bigram-Backcopy;
        the end token last under data.end_token (in place of the sequence's last token)."""
        cfg = self.cfg
        has_bos = cfg.probe_has_bos
        gen = sampling.rng(cfg.split_seed, sampling.TAG_SYNTHETIC_PROBE)
        ids = self.task.sample(gen, cfg.probe.n_windows, cfg.probe.seq_len, bos=has_bos)
        ids = end_windows(ids, self.end_id)
        trig = None
        if self.task.trigger_ids is not None:
            trig = torch.from_numpy(self.task.is_trigger(ids))
        text = [self.task.tokenizer.decode(row.tolist()) for row in ids]
        return ProbeSet(
            input_ids=torch.from_numpy(ids), text=text, trigger_mask=trig, has_bos=has_bos
        )

    def stream(self, length: int) -> np.ndarray:
        """The streaming evaluation's tokens [length]: one sequence of the task from its own
        seed stream (split_seed and a tag no training, validation or probe draw uses), BOS
        first when training uses BOS."""
        gen = sampling.rng(self.cfg.split_seed, _EVAL_STREAM)
        return self.task.sample(gen, 1, length, bos=self.bos)[0]
