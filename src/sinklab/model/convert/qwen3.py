"""Qwen3: Qwen2 without the fixed q/k/v biases, plus an RMSNorm over each head's q and k
(after the projection, before RoPE) and an explicit head_dim (n_heads x head_dim need not be
hidden_size).

`attention_bias=True` puts a bias on o_proj as well as q/k/v; sinklab has an o bias only with
model.bias, which also adds MLP biases Qwen3 lacks, so that case is refused.
"""

from __future__ import annotations

from typing import Any

import torch

from sinklab.model.config import ModelConfig
from sinklab.model.convert.exact import ConversionError, TheirWeights, read
from sinklab.model.convert.llama import LAYER_NAMES, hf_name, llama_sizes, weights_by_name
from sinklab.model.convert.qwen2 import check_causal, check_silu, rope_of, windows_of
from sinklab.model.convert.registry import Family, register

QWEN3_LAYER_NAMES = {
    **LAYER_NAMES,
    "attn.q_norm": "self_attn.q_norm",
    "attn.k_norm": "self_attn.k_norm",
}


def config_from_qwen3(hf_cfg: Any) -> ModelConfig:
    """The sinklab config of a Qwen3 config, or a ConversionError naming the key."""
    check_silu(hf_cfg)
    check_causal(hf_cfg)
    if bool(read(hf_cfg, "attention_bias")):
        raise ConversionError(
            "attention_bias",
            "True biases o_proj too; sinklab has an output bias only with model.bias, which "
            "also adds MLP biases Qwen3 lacks",
        )
    theta, scaling = rope_of(hf_cfg)
    window, layer_types = windows_of(hf_cfg)
    sizes = llama_sizes(hf_cfg)
    sizes["head_dim"] = int(read(hf_cfg, "head_dim"))  # Qwen3 always states it
    return ModelConfig(
        **sizes,
        rope_theta=theta,
        rope_scaling=scaling,
        mlp="swiglu",
        bias=False,
        qk_norm=True,  # q_norm / k_norm: RMSNorm(head_dim, eps=rms_norm_eps), shared by heads
        qk_norm_scope="head",
        sliding_window=window,
        layer_types=layer_types,
        dropout=float(getattr(hf_cfg, "attention_dropout", 0.0) or 0.0),
    )


def _qwen3_name(name: str) -> str:
    return hf_name(name, QWEN3_LAYER_NAMES)


def weights_from_qwen3(cfg: ModelConfig, theirs: TheirWeights) -> dict[str, torch.Tensor]:
    """Llama's names plus attn.q_norm / attn.k_norm -> self_attn.q_norm / self_attn.k_norm."""
    return weights_by_name(cfg, theirs, _qwen3_name)


QWEN3 = register(Family("qwen3", "Qwen3", config_from_qwen3, weights_from_qwen3))
