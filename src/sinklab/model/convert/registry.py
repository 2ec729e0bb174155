"""Which transformers architectures convert into sinklab's model, and how.

One `Family` per transformers `model_type`: a config reader (every size read from their config,
every option we cannot express refused) and a weight mapper (their tensors -> our names). The
family modules register themselves when `sinklab.model.convert` is imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from sinklab.model.config import ModelConfig
from sinklab.model.convert.exact import ConversionError, TheirWeights


@dataclass(frozen=True)
class Family:
    """How one transformers architecture becomes a sinklab `Transformer`."""

    model_type: str  # transformers' config.model_type
    name: str  # for people: "GPT-NeoX (Pythia)"
    config: Callable[[Any], ModelConfig]
    weights: Callable[[ModelConfig, TheirWeights], dict[str, torch.Tensor]]


_FAMILIES: dict[str, Family] = {}


def register(family: Family) -> Family:
    _FAMILIES[family.model_type] = family
    return family


def supported() -> list[str]:
    """The model_types that convert exactly, sorted."""
    return sorted(_FAMILIES)


def family_of(model_type: str) -> Family:
    """The family of `model_type`, or a one-line refusal naming the supported ones."""
    family = _FAMILIES.get(model_type)
    if family is None:
        raise ConversionError(
            "model_type",
            f"architecture {model_type!r} does not convert exactly into sinklab's model; "
            f"supported: {', '.join(supported())}",
        )
    return family
