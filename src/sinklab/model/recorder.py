"""Reads and edits named tensors during a forward pass (the hook points of `probe.py`).

Every hook point in the model is one call, `x = rec.hook(name, x, pos_dim)`: the recorder may
replace the tensor (an edit, TransformerLens' `run_with_hooks` in spirit) and may keep it (the
probe cache). The training path passes `NULL_RECORDER`, whose `hook` returns its input and
does nothing else, so both paths run the same module code and training pays one call per
hook point.

Sink-token prefix positions are handled here, in one place: the cache never holds them, and
an edit sees and returns exactly the token positions the cache holds (the prefix passes
through untouched) unless it is wrapped in `WithPrefix`. The cache holds a tensor as it flows
on, i.e. after its edit.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

Edit = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class WithPrefix:
    """An edit that also sees (and must return) the sink-token prefix positions."""

    fn: Edit


Edits = Mapping[str, Edit | WithPrefix]


class Recorder:
    """Stores tensors whose full name passes `want` and applies `edits` (full name -> edit);
    `child` scopes names under a prefix. `applied` collects the edited names, so the caller
    can refuse an edit whose name matched no hook point."""

    def __init__(
        self,
        want: Callable[[str], bool],
        n_prefix: int = 0,
        cache: dict[str, torch.Tensor] | None = None,
        prefix: str = "",
        edits: Edits | None = None,
        applied: set[str] | None = None,
    ) -> None:
        self.want = want
        self.n_prefix = n_prefix
        self.cache = {} if cache is None else cache
        self.prefix = prefix
        self.edits: Edits = {} if edits is None else edits
        self.applied = set() if applied is None else applied

    def child(self, name: str) -> Recorder:
        return Recorder(
            self.want, self.n_prefix, self.cache, f"{self.prefix}{name}.", self.edits, self.applied
        )

    def wants(self, name: str) -> bool:
        """Whether `name` is kept (read)."""
        return self.want(self.prefix + name)

    def touches(self, name: str) -> bool:
        """Whether `name` is kept or edited: the model must then materialise it (an attention
        pattern forces the explicit path in its layer)."""
        return self.wants(name) or self.prefix + name in self.edits

    def hook(self, name: str, tensor: torch.Tensor, pos_dim: int) -> torch.Tensor:
        """The tensor that flows on from hook point `name`: edited if an edit names it, and
        kept (without the sink-token positions along `pos_dim`) if `want` asks for it."""
        full = self.prefix + name
        edit = self.edits.get(full)
        if edit is not None:
            tensor = _apply(full, edit, tensor, pos_dim, self.n_prefix)
            self.applied.add(full)
        if self.want(full):
            self.cache[full] = _tokens(tensor, pos_dim, self.n_prefix)
        return tensor


def _tokens(tensor: torch.Tensor, pos_dim: int, n_prefix: int) -> torch.Tensor:
    if not n_prefix:
        return tensor
    return tensor.narrow(pos_dim, n_prefix, tensor.shape[pos_dim] - n_prefix)


def _apply(
    name: str, edit: Edit | WithPrefix, tensor: torch.Tensor, pos_dim: int, n_prefix: int
) -> torch.Tensor:
    """Run one edit on the token positions (or, for `WithPrefix`, on all), checking that it
    returns the shape it was given."""
    whole = isinstance(edit, WithPrefix) or not n_prefix
    fn = edit.fn if isinstance(edit, WithPrefix) else edit
    given = tensor if whole else _tokens(tensor, pos_dim, n_prefix)
    out = fn(given)
    if not isinstance(out, torch.Tensor) or out.shape != given.shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"edit of {name} returned {got}; it was given {tuple(given.shape)}")
    if whole:
        return out
    return torch.cat([tensor.narrow(pos_dim, 0, n_prefix), out.to(tensor.dtype)], dim=pos_dim)


class NullRecorder(Recorder):
    """The training path's recorder: keeps nothing, edits nothing."""

    def __init__(self) -> None:
        super().__init__(lambda name: False)

    def child(self, name: str) -> Recorder:
        return self

    def wants(self, name: str) -> bool:
        return False

    def touches(self, name: str) -> bool:
        return False

    def hook(self, name: str, tensor: torch.Tensor, pos_dim: int) -> torch.Tensor:
        return tensor


NULL_RECORDER = NullRecorder()
