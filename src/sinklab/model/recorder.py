"""Collects the probe cache during a forward pass.

The training path passes a recorder that keeps nothing, so both paths run the same module
code. Sink-token prefix positions are cut from every per-token tensor here, in one place.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


class Recorder:
    """Stores tensors whose full name passes `want`; `child` scopes names under a prefix."""

    def __init__(
        self,
        want: Callable[[str], bool],
        n_prefix: int = 0,
        cache: dict[str, torch.Tensor] | None = None,
        prefix: str = "",
    ) -> None:
        self.want = want
        self.n_prefix = n_prefix
        self.cache = {} if cache is None else cache
        self.prefix = prefix

    def child(self, name: str) -> Recorder:
        return Recorder(self.want, self.n_prefix, self.cache, f"{self.prefix}{name}.")

    def wants(self, name: str) -> bool:
        return self.want(self.prefix + name)

    def keep(self, name: str, tensor: torch.Tensor, pos_dim: int) -> None:
        """Store `tensor` under `name`, dropping the sink-token positions along `pos_dim`."""
        if self.wants(name):
            if self.n_prefix:
                tensor = tensor.narrow(
                    pos_dim, self.n_prefix, tensor.shape[pos_dim] - self.n_prefix
                )
            self.cache[self.prefix + name] = tensor


class NullRecorder(Recorder):
    """The training path's recorder: wants nothing, stores nothing."""

    def __init__(self) -> None:
        super().__init__(lambda name: False)

    def child(self, name: str) -> Recorder:
        return self

    def wants(self, name: str) -> bool:
        return False

    def keep(self, name: str, tensor: torch.Tensor, pos_dim: int) -> None:
        return None


NULL_RECORDER = NullRecorder()
