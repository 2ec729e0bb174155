"""Mistral: Llama without biases, plus a sliding window on every layer when `sliding_window`
is set (None: full causal attention), and an explicit head_dim.

transformers' MistralModel builds one mask for all layers from `sliding_window` and ignores a
`layer_types` list (it only warns; Ministral is the class that alternates), so we do too.
"""

from __future__ import annotations

from typing import Any

import torch

from sinklab.model.config import ModelConfig
from sinklab.model.convert.exact import TheirWeights, read
from sinklab.model.convert.llama import llama_sizes, weights_by_name
from sinklab.model.convert.qwen2 import check_causal, check_silu, rope_of
from sinklab.model.convert.registry import Family, register


def config_from_mistral(hf_cfg: Any) -> ModelConfig:
    """The sinklab config of a Mistral config, or a ConversionError naming the key."""
    check_silu(hf_cfg)
    check_causal(hf_cfg)
    theta, scaling = rope_of(hf_cfg)
    window = read(hf_cfg, "sliding_window")  # ModelConfig refuses a window below 1
    return ModelConfig(
        **llama_sizes(hf_cfg),
        rope_theta=theta,
        rope_scaling=scaling,
        mlp="swiglu",
        bias=False,  # no linear layer of Mistral has one
        sliding_window=None if window is None else int(window),
        layer_types=None,  # every layer slides when sliding_window is set
        dropout=float(getattr(hf_cfg, "attention_dropout", 0.0) or 0.0),
    )


def weights_from_mistral(cfg: ModelConfig, theirs: TheirWeights) -> dict[str, torch.Tensor]:
    """Llama's names exactly."""
    return weights_by_name(cfg, theirs)


MISTRAL = register(Family("mistral", "Mistral", config_from_mistral, weights_from_mistral))
