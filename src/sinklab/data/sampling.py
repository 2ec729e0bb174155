"""Which window goes into which batch: a pure function of (seed, batch index, rank, world size).

Nothing here depends on the run length, so changing max_steps never changes the data order
(the gpt-neox pitfall), and any batch can be rebuilt from its index alone (OLMo-style).

Sample g of the global stream (g = (batch * world_size + rank) * batch_size + b) lies in epoch
e = g // n_windows; each epoch visits every non-overlapping window once in a seeded order,
with a seeded shift of the window grid so epochs see different cut points.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

# Stream tags keep the random streams of different purposes independent.
TAG_EPOCH = 1
TAG_FIRST_TOKEN = 2
TAG_SYNTHETIC = 3
TAG_SYNTHETIC_VAL = 4
TAG_SYNTHETIC_PROBE = 5


def rng(*keys: int) -> np.random.Generator:
    """A generator determined by integer keys only."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in keys]))


def global_batch(index: int, rank: int, world_size: int) -> int:
    """The id of micro-batch `index` of `rank`: ranks interleave, so their streams are disjoint."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside world size {world_size}")
    if index < 0:
        raise ValueError(f"batch index must be >= 0, got {index}")
    return index * world_size + rank


class WindowSampler:
    """Start offsets of training windows in a stream of `n_tokens` tokens."""

    def __init__(self, n_tokens: int, window_tokens: int, stride: int, seed: int) -> None:
        slack = n_tokens - window_tokens
        if slack < 0:
            raise ValueError(
                f"stream of {n_tokens} tokens is shorter than one window ({window_tokens})"
            )
        self.stride = stride
        self.seed = seed
        # Enough windows that every shift in [0, stride) keeps the last one inside the stream.
        self.n_windows = (slack - (stride - 1)) // stride + 1 if slack >= stride - 1 else 1
        self.max_shift = min(stride - 1, slack - (self.n_windows - 1) * stride)

    def starts(self, first_sample: int, count: int) -> np.ndarray:
        """Stream offsets of samples first_sample .. first_sample + count - 1."""
        g = np.arange(first_sample, first_sample + count, dtype=np.int64)
        epochs, pos = np.divmod(g, self.n_windows)
        out = np.empty(count, dtype=np.int64)
        for e in np.unique(epochs):
            perm, shift = self._epoch(int(e))
            sel = epochs == e
            out[sel] = shift + perm[pos[sel]] * self.stride
        return out

    def _epoch(self, epoch: int) -> tuple[np.ndarray, int]:
        return _epoch_order(self.seed, epoch, self.n_windows, self.max_shift)


@lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n_windows: int, max_shift: int) -> tuple[np.ndarray, int]:
    g = rng(seed, TAG_EPOCH, epoch)
    perm = g.permutation(n_windows)
    shift = int(g.integers(0, max_shift + 1))
    return perm, shift


class BlockSampler:
    """Which of `n_blocks` fixed blocks (storage=shards) each sample reads: sample g lies in
    epoch g // n_blocks, and each epoch visits every block once in a seeded order. So no
    block is read twice before all are read, and ranks (disjoint g) never share a block
    within an epoch."""

    def __init__(self, n_blocks: int, seed: int) -> None:
        if n_blocks < 1:
            raise ValueError("no block to sample from")
        self.n_blocks = n_blocks
        self.seed = seed

    def blocks(self, first_sample: int, count: int) -> np.ndarray:
        """Block ids of samples first_sample .. first_sample + count - 1."""
        g = np.arange(first_sample, first_sample + count, dtype=np.int64)
        epochs, pos = np.divmod(g, self.n_blocks)
        out = np.empty(count, dtype=np.int64)
        for e in np.unique(epochs):
            perm, _ = _epoch_order(self.seed, int(e), self.n_blocks, 0)
            sel = epochs == e
            out[sel] = perm[pos[sel]]
        return out


def evenly_spaced(n_tokens: int, window_tokens: int, count: int) -> np.ndarray:
    """Fixed, seed-free starts for validation and probe windows, spread over the whole split."""
    slack = n_tokens - window_tokens
    if slack < 0:
        raise ValueError(
            f"stream of {n_tokens} tokens is shorter than one window ({window_tokens})"
        )
    return np.linspace(0, slack, count).round().astype(np.int64)
