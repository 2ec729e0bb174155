"""Cut fixed-length windows from a packed stream and give each its targets and loss mask.

BOS modes (Gu et al.'s and Xiao et al.'s settings):
- `none`: windows are raw slices of `doc EOS doc EOS ...`;
- `document_start`: slices of `BOS doc EOS BOS doc EOS ...`, so BOS appears where a document
  starts, wherever that falls in the window;
- `every_window`: token 0 of every window is BOS, followed by seq_len - 1 stream tokens.
`first_token` random/fixed then replaces token 0 (Gu et al.'s first-token experiments).
`end_token` (objective mlm) replaces the last input token of every window by the end token
(EOS for text): the window still reads the same stream tokens, only its last one is hidden.

Targets. For next-token prediction (objective clm) the target of position t is the stream's
token t + 1. For masked-LM (objective mlm, an encoder) `mask_batch` turns such a batch into
BERT's: the inputs are corrupted at the chosen positions and the target of position t is the
ORIGINAL token at t (not shifted), with loss only where a token was chosen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class WindowSpec:
    """Everything needed to turn stream offsets into a training batch."""

    seq_len: int
    bos: str
    bos_id: int | None
    min_context: int
    context_end: int
    first_token: str = "natural"
    first_token_id: int | None = None
    vocab_size: int = 0
    special_ids: tuple[int, ...] = ()
    # data.end_token: the id written at the last input position (None: off). An input only:
    # end_token needs objective mlm, whose targets are the (clean) inputs themselves.
    end_id: int | None = None

    @property
    def window_tokens(self) -> int:
        """Stream tokens one window reads (inputs plus the last target)."""
        return self.seq_len if self.bos == "every_window" else self.seq_len + 1


def cut(stream: np.ndarray, starts: np.ndarray, spec: WindowSpec) -> tuple[np.ndarray, np.ndarray]:
    """(input_ids, targets), each int64 [len(starts), seq_len]."""
    chunk = np.asarray(stream[starts[:, None] + np.arange(spec.window_tokens)], dtype=np.int64)
    if spec.bos == "every_window":
        if spec.bos_id is None:
            raise ValueError("bos=every_window needs a tokenizer with a BOS token")
        inputs = np.concatenate(
            [np.full((len(starts), 1), spec.bos_id, dtype=np.int64), chunk[:, :-1]], 1
        )
        return end_windows(inputs, spec.end_id), chunk
    return end_windows(chunk[:, :-1], spec.end_id), chunk[:, 1:]


def end_windows(ids: np.ndarray, end_id: int | None) -> np.ndarray:
    """`ids` [N, T] with the last position of every window set to `end_id` (a copy); `ids`
    itself when `end_id` is None (data.end_token off)."""
    if end_id is None:
        return ids
    ids = np.array(ids, dtype=np.int64)
    ids[:, -1] = end_id
    return ids


def replace_first_token(
    inputs: np.ndarray, spec: WindowSpec, gen: np.random.Generator
) -> np.ndarray:
    """Apply `first_token`: random draws token 0 uniformly from the non-special tokens."""
    if spec.first_token == "natural":
        return inputs
    inputs = inputs.copy()
    if spec.first_token == "fixed":
        inputs[:, 0] = spec.first_token_id
    else:
        allowed = np.setdiff1d(
            np.arange(spec.vocab_size), np.asarray(spec.special_ids, dtype=np.int64)
        )
        inputs[:, 0] = gen.choice(allowed, size=inputs.shape[0])
    return inputs


def context_mask(batch: int, spec: WindowSpec) -> np.ndarray:
    """True where a position carries loss: min_context <= t < max_context."""
    t = np.arange(spec.seq_len)
    row = (t >= spec.min_context) & (t < spec.context_end)
    return np.broadcast_to(row, (batch, spec.seq_len)).copy()


def to_batch(inputs: np.ndarray, targets: np.ndarray, mask: np.ndarray) -> dict[str, torch.Tensor]:
    return {
        "input_ids": torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.int64)),
        "targets": torch.from_numpy(np.ascontiguousarray(targets, dtype=np.int64)),
        "loss_mask": torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)),
    }


def make_batch(
    stream: np.ndarray,
    starts: np.ndarray,
    spec: WindowSpec,
    gen: np.random.Generator,
    pad_id: int | None = None,
) -> dict[str, torch.Tensor]:
    """One batch of windows at `starts`, with loss masked by context and padding."""
    inputs, targets = cut(stream, starts, spec)
    inputs = replace_first_token(inputs, spec, gen)
    mask = context_mask(len(starts), spec)
    if pad_id is not None:
        mask &= targets != pad_id
    return to_batch(inputs, targets, mask)


@dataclass(frozen=True)
class MaskSpec:
    """BERT's masking (Devlin et al. 2019): choose `probability` of the maskable tokens; of
    those, `mask_frac` become `mask_id`, `random_frac` a random non-special token, the rest
    stay as they are. `special_ids` (BOS, EOS, pad, the mask itself) are never chosen, nor
    drawn as random replacements."""

    mask_id: int
    vocab_size: int
    special_ids: tuple[int, ...] = ()
    probability: float = 0.15
    mask_frac: float = 0.8
    random_frac: float = 0.1

    @property
    def never(self) -> np.ndarray:
        return np.asarray(sorted({*self.special_ids, self.mask_id}), dtype=np.int64)


def mask_tokens(
    ids: np.ndarray, spec: MaskSpec, gen: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(corrupted inputs, targets, loss_mask) for masked-LM from clean `ids` [N, T].

    A pure function of `ids` and the generator's state: targets are `ids` themselves (the
    original token at each position) and loss_mask marks the chosen positions. Every draw is
    made for the whole batch, so the result does not depend on which tokens are special. When
    no position is chosen at all (only possible for tiny batches), one maskable position is
    chosen, so the loss is never an average over nothing.
    """
    ids = np.asarray(ids, dtype=np.int64)
    maskable = ~np.isin(ids, spec.never)
    chosen = (gen.random(ids.shape) < spec.probability) & maskable
    u = gen.random(ids.shape)
    allowed = np.setdiff1d(np.arange(spec.vocab_size), spec.never)
    random_ids = allowed[gen.integers(0, len(allowed), size=ids.shape)]
    if not chosen.any() and maskable.any():
        chosen.flat[gen.choice(np.flatnonzero(maskable))] = True
    to_mask = chosen & (u < spec.mask_frac)
    to_random = chosen & (u >= spec.mask_frac) & (u < spec.mask_frac + spec.random_frac)
    corrupted = np.where(to_mask, spec.mask_id, np.where(to_random, random_ids, ids))
    return corrupted, ids.copy(), chosen


def mask_batch(
    batch: dict[str, torch.Tensor], spec: MaskSpec | None, gen: np.random.Generator
) -> dict[str, torch.Tensor]:
    """A next-token batch as a masked-LM batch: its clean `input_ids` corrupted by
    `mask_tokens`; unchanged when `spec` is None (objective clm)."""
    if spec is None:
        return batch
    inputs, targets, mask = mask_tokens(batch["input_ids"].numpy(), spec, gen)
    return to_batch(inputs, targets, mask)
