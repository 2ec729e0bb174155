"""Exact conversion bookkeeping: every tensor of theirs consumed, every parameter of ours filled.

A converter that silently drops a bias or leaves a freshly initialised weight produces a model
that runs and measures something else. `TheirWeights` hands out each of their tensors once and
remembers what is left; `load_exact` refuses (one line, naming the keys) unless the two sides
match exactly, before anything is measured.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from sinklab.errors import ConfigError


class ConversionError(ConfigError):
    """A checkpoint that cannot be converted exactly; the message names what does not match."""


_MISSING = object()


def read(hf_config: Any, name: str) -> Any:
    """`hf_config.name`, refusing a config that lacks it: sizes are read, never defaulted."""
    value = getattr(hf_config, name, _MISSING)
    if value is _MISSING:
        kind = getattr(hf_config, "model_type", type(hf_config).__name__)
        raise ConversionError(name, f"the {kind} config has no {name!r}; cannot read its size")
    return value


def _names(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


class TheirWeights:
    """Their state dict, each tensor taken at most once."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], source: str = "checkpoint") -> None:
        self._tensors = dict(tensors)
        self._left = set(self._tensors)
        self.source = source
        self.skipped: dict[str, str] = {}

    def __contains__(self, name: str) -> bool:
        return name in self._tensors

    def take(self, name: str) -> torch.Tensor:
        """Their tensor `name`; a second take of the same tensor, or a missing one, is refused."""
        if name not in self._tensors:
            raise ConversionError("weights", f"{self.source} has no tensor {name!r}")
        if name not in self._left:
            raise ConversionError("weights", f"{name!r} of {self.source} was used twice")
        self._left.discard(name)
        return self._tensors[name]

    def skip(self, name: str, why: str) -> None:
        """Mark `name` as known not to be a weight (a mask buffer, say), with the reason."""
        if name in self._left:
            self._left.discard(name)
            self.skipped[name] = why

    def take_tied(self, name: str, tied_to: torch.Tensor) -> None:
        """Consume a tensor that must equal one already taken (a tied LM head)."""
        if name not in self._tensors:
            return
        tensor = self.take(name)
        if tensor.shape != tied_to.shape or not torch.equal(tensor, tied_to):
            raise ConversionError(
                "tie_word_embeddings",
                f"{self.source}: {name!r} differs from the embedding it is tied to",
            )

    def take_module(self, prefix: str, ours: str, bias: bool = True) -> dict[str, torch.Tensor]:
        """`prefix`.weight (and .bias) as our `ours`.weight (and .bias): a Linear or a norm
        whose layout matches ours."""
        out = {f"{ours}.weight": self.take(f"{prefix}.weight")}
        if bias:
            out[f"{ours}.bias"] = self.take(f"{prefix}.bias")
        return out

    def take_head(
        self, tied: bool, embedding: torch.Tensor, name: str = "lm_head.weight"
    ) -> dict[str, torch.Tensor]:
        """The LM head: checked against `embedding` and consumed when tied (our model shares
        the tensor, so nothing to fill), else ours `lm_head.weight`."""
        if tied:
            self.take_tied(name, embedding)
            return {}
        return {"lm_head.weight": self.take(name)}

    def left(self) -> list[str]:
        return sorted(self._left)


def load_exact(
    model: nn.Module, ours: Mapping[str, torch.Tensor], theirs: TheirWeights
) -> nn.Module:
    """Copy `ours` into `model`'s parameters, refusing any mismatch between the two sides.

    Refused: a tensor of theirs left unconsumed, a parameter of ours left unfilled, a name of
    ours the model does not have, a shape that differs. Tied parameters (the LM head sharing
    the embedding) are filled once.
    """
    left = theirs.left()
    if left:
        raise ConversionError(
            "weights", f"{theirs.source}: tensors with no place in the model: {_names(left)}"
        )
    params = dict(model.named_parameters())  # tied parameters appear once
    unknown = sorted(set(ours) - set(params) - _tied_aliases(model))
    if unknown:
        raise ConversionError("weights", f"converter produced unknown names: {_names(unknown)}")
    unfilled = sorted(set(params) - set(ours))
    if unfilled:
        raise ConversionError(
            "weights", f"{theirs.source}: parameters left unfilled: {_names(unfilled)}"
        )
    with torch.no_grad():
        for name, p in params.items():
            value = ours[name]
            if tuple(value.shape) != tuple(p.shape):
                raise ConversionError(
                    "weights",
                    f"{theirs.source}: {name} has shape {tuple(value.shape)}, "
                    f"the model expects {tuple(p.shape)}",
                )
            p.copy_(value.to(p.dtype))
    return model


def _tied_aliases(model: nn.Module) -> set[str]:
    """Names under which a shared parameter appears a second time (lm_head.weight when tied)."""
    seen: set[int] = set()
    aliases = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            aliases.add(name)
        seen.add(id(p))
    return aliases
