"""Qwen2 / Qwen2.5: Llama with biases on q, k and v (not o, not the MLP) and, optionally,
sliding-window attention in the layers from `max_window_layers` on (or where `layer_types`
says).

The helpers here (`rope_of`, `windows_of`) also serve Qwen3 and Mistral, whose transformers
code builds RoPE and the sliding-window masks the same way.
"""

from __future__ import annotations

from typing import Any

import torch

from sinklab.model.config import ModelConfig
from sinklab.model.convert.exact import ConversionError, TheirWeights, read
from sinklab.model.convert.llama import llama_sizes, rope_settings, weights_by_name
from sinklab.model.convert.registry import Family, register
from sinklab.model.position import RopeScaling

# transformers' layer type -> ours (`ModelConfig.layer_types`)
_LAYER_TYPES = {"full_attention": "full", "sliding_attention": "sliding"}


def rope_of(hf_cfg: Any) -> tuple[float, RopeScaling | None]:
    """(rope_theta, rope_scaling). Linear and dynamic scaling map to `model.rope_scaling`,
    whose tables are computed with transformers' arithmetic (`position.RopeScaling`); every
    other rope_type changes scores in ways we do not model, so it is refused.

    Dynamic: both sides take the base from the forward's own length. transformers also keeps
    the grown base cached, so after a longer forward its next shorter one that still exceeds
    max_position_embeddings uses the longer one's base; a fresh transformers model (or any
    forward up to max_position_embeddings, where dynamic is plain RoPE) matches exactly."""
    kind, theta, params = rope_settings(hf_cfg)
    partial = params.get("partial_rotary_factor", 1.0)
    if partial not in (None, 1.0):
        raise ConversionError(
            "rope_scaling", f"partial_rotary_factor={partial} is not supported for this family"
        )
    if kind == "default":
        return theta, None
    if kind in ("linear", "dynamic"):
        return theta, RopeScaling(type=kind, factor=float(params["factor"]))
    raise ConversionError(
        "rope_scaling",
        f"rope_type {kind!r} has no exact sinklab form (default, linear and dynamic convert)",
    )


def windows_of(hf_cfg: Any) -> tuple[int | None, list[str] | None]:
    """(sliding_window, layer_types) as transformers' Qwen2 / Qwen3 build their masks: layer i
    slides iff `layer_types[i]` is "sliding_attention" (the config derives the list from
    use_sliding_window and max_window_layers when it is not given), with window
    `sliding_window` (None unless use_sliding_window)."""
    n_layers = int(read(hf_cfg, "num_hidden_layers"))
    types = list(read(hf_cfg, "layer_types"))
    unknown = sorted({t for t in types if t not in _LAYER_TYPES})
    if unknown:
        raise ConversionError(
            "layer_types",
            f"unknown layer types {unknown}; full_attention and sliding_attention convert",
        )
    if len(types) != n_layers:
        raise ConversionError(
            "layer_types", f"has {len(types)} entries for num_hidden_layers={n_layers}"
        )
    if "sliding_attention" not in types:
        return None, None
    window = read(hf_cfg, "sliding_window")
    if window is None:
        raise ConversionError(
            "sliding_window",
            "layer_types has sliding_attention layers but sliding_window is None "
            "(use_sliding_window=False); set both or neither",
        )
    return int(window), [_LAYER_TYPES[t] for t in types]


def check_causal(hf_cfg: Any) -> None:
    """transformers' masks turn bidirectional when a config sets is_causal=False."""
    if getattr(hf_cfg, "is_causal", True) is False:
        raise ConversionError(
            "is_causal", "False (bidirectional attention) does not convert; only causal decoders"
        )


def check_silu(hf_cfg: Any) -> None:
    act = read(hf_cfg, "hidden_act")
    if act != "silu":
        raise ConversionError("hidden_act", f"only silu (SwiGLU) converts, got {act!r}")


def config_from_qwen2(hf_cfg: Any) -> ModelConfig:
    """The sinklab config of a Qwen2 / Qwen2.5 config, or a ConversionError naming the key."""
    check_silu(hf_cfg)
    check_causal(hf_cfg)
    theta, scaling = rope_of(hf_cfg)
    window, layer_types = windows_of(hf_cfg)
    return ModelConfig(
        **llama_sizes(hf_cfg),
        rope_theta=theta,
        rope_scaling=scaling,
        mlp="swiglu",
        bias=False,  # o_proj and the MLP have none
        qkv_bias=True,  # transformers' Qwen2Attention always builds q/k/v with biases
        sliding_window=window,
        layer_types=layer_types,
        dropout=float(getattr(hf_cfg, "attention_dropout", 0.0) or 0.0),
    )


def weights_from_qwen2(cfg: ModelConfig, theirs: TheirWeights) -> dict[str, torch.Tensor]:
    """Llama's names; the q/k/v biases follow from `qkv_bias` (attn.wq.bias -> q_proj.bias)."""
    return weights_by_name(cfg, theirs)


QWEN2 = register(Family("qwen2", "Qwen2 / Qwen2.5", config_from_qwen2, weights_from_qwen2))
