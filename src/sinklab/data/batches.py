"""Batch makers: turn (batch index, rank, world size) into a batch, for real text and for synthetic data.

Both expose the same three things the datamodule needs: the training batch at any index,
the fixed validation batches, and the probe set. Keeping them free of Lightning makes the
data order testable on its own and picklable into DataLoader workers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from sinklab.data import sampling
from sinklab.data.config import DataConfig
from sinklab.data.probe_set import ProbeSet
from sinklab.data.synthetic import SyntheticTask
from sinklab.data.tokenizer import Tokenizer
from sinklab.data.windows import WindowSpec, context_mask, make_batch, replace_first_token, to_batch
from sinklab.errors import ConfigError

_VAL_FIRST_TOKEN = 1000  # stream tag for the validation set's first-token draws


def window_spec(
    cfg: DataConfig, vocab_size: int, bos_id: int | None, special_ids: tuple[int, ...]
) -> WindowSpec:
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
        self.spec = window_spec(cfg, tokenizer.vocab_size, tokenizer.bos_id, specials)
        self.files = stream_files  # train/val (BOS variant under document_start), plus val_plain
        self._arrays: dict[str, np.ndarray] = {}
        train_len = len(self._stream("train"))
        if train_len < self.spec.window_tokens:
            raise ConfigError(
                "data.seq_len",
                f"{cfg.seq_len} needs {self.spec.window_tokens} tokens per "
                f"window but the training split has only {train_len}",
            )
        val_len = len(self._stream("val"))
        if val_len < self.spec.window_tokens:
            raise ConfigError(
                "data.val_fraction",
                f"the validation split has {val_len} tokens, fewer than one "
                f"window ({self.spec.window_tokens}); raise val_fraction or lower seq_len",
            )
        self.sampler = sampling.WindowSampler(
            train_len, self.spec.window_tokens, cfg.seq_len, cfg.seed
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
        return make_batch(self._stream("train"), starts, self.spec, gen, self.tokenizer.pad_id)

    def val_batches(self) -> list[dict[str, torch.Tensor]]:
        cfg = self.cfg
        stream = self._stream("val")
        starts = sampling.evenly_spaced(
            len(stream), self.spec.window_tokens, cfg.val_batches * cfg.batch_size
        )
        gen = sampling.rng(cfg.split_seed, _VAL_FIRST_TOKEN)
        return [
            make_batch(stream, chunk, self.spec, gen, self.tokenizer.pad_id)
            for chunk in np.split(starts, cfg.val_batches)
        ]

    def probe(self) -> ProbeSet:
        """Evenly spaced windows of the validation documents; BOS first if the probe uses BOS."""
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
        text = [self.tokenizer.decode(row.tolist()) for row in ids]
        return ProbeSet(
            input_ids=torch.from_numpy(ids), text=text, trigger_mask=None, has_bos=has_bos
        )


class SyntheticBatches:
    """Sequences generated on the fly from (seed, batch index); one sequence is one window."""

    def __init__(self, cfg: DataConfig, task: SyntheticTask) -> None:
        self.cfg = cfg
        self.task = task
        self.bos = cfg.uses_bos
        self.spec = window_spec(cfg, task.vocab_size, task.bos_id, (task.bos_id,))

    def _batch(
        self, gen: np.random.Generator, first_gen: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        seqs = self.task.sample(gen, cfg.batch_size, cfg.seq_len + 1, bos=self.bos)
        inputs, targets = seqs[:, :-1], seqs[:, 1:]
        mask = context_mask(cfg.batch_size, self.spec)
        if cfg.synthetic.loss_on != "all":
            trig = self.task.is_trigger(inputs)
            mask &= trig if cfg.synthetic.loss_on == "trigger" else ~trig
        inputs = replace_first_token(inputs, self.spec, first_gen)
        return to_batch(inputs, targets, mask)

    def batch(self, index: int, rank: int = 0, world_size: int = 1) -> dict[str, torch.Tensor]:
        g = sampling.global_batch(index, rank, world_size)
        return self._batch(
            sampling.rng(self.cfg.seed, sampling.TAG_SYNTHETIC, g),
            sampling.rng(self.cfg.seed, sampling.TAG_FIRST_TOKEN, g),
        )

    def val_batches(self) -> list[dict[str, torch.Tensor]]:
        s = self.cfg.split_seed
        return [
            self._batch(
                sampling.rng(s, sampling.TAG_SYNTHETIC_VAL, j), sampling.rng(s, _VAL_FIRST_TOKEN, j)
            )
            for j in range(self.cfg.val_batches)
        ]

    def probe(self) -> ProbeSet:
        """Probe sequences from their own seed stream; triggers marked for Bigram-Backcopy."""
        cfg = self.cfg
        has_bos = cfg.probe_has_bos
        gen = sampling.rng(cfg.split_seed, sampling.TAG_SYNTHETIC_PROBE)
        ids = self.task.sample(gen, cfg.probe.n_windows, cfg.probe.seq_len, bos=has_bos)
        trig = None
        if self.task.trigger_ids is not None:
            trig = torch.from_numpy(self.task.is_trigger(ids))
        text = [self.task.tokenizer.decode(row.tolist()) for row in ids]
        return ProbeSet(
            input_ids=torch.from_numpy(ids), text=text, trigger_mask=trig, has_bos=has_bos
        )
