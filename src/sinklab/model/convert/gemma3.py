"""Gemma 3, the text model (`Gemma3ForCausalLM`, model_type `gemma3_text`; Gemma 3 270M).

A Llama-layout decoder with sandwich norms (input_layernorm and post_attention_layernorm around
attention, pre_feedforward_layernorm and post_feedforward_layernorm around the MLP), RMSNorm
gains applied as (1 + w) (`norm_offset=1.0`; the stored weights are used unchanged), per-head
q/k RMSNorm, embeddings times sqrt(hidden_size), a GeGLU MLP with the tanh GELU, scores scaled
by query_pre_attn_scalar**-0.5, an optional final-logit softcap, and sliding-window layers (local RoPE base) between full ones
(global base). Every option outside that is refused with the key that carries it.

model_type `gemma3` is the vision-language model; it is refused, since its text weights sit
beside a vision tower under other names.
"""

from __future__ import annotations

from typing import Any

import torch

from sinklab.model.config import ModelConfig
from sinklab.model.convert.exact import ConversionError, TheirWeights, read
from sinklab.model.convert.llama import hf_name, llama_sizes, weights_by_name
from sinklab.model.convert.qwen2 import check_causal, windows_of
from sinklab.model.convert.registry import Family, register

# hidden_activation -> our gelu_approx (the MLP is always gated: act(gate) * up)
_GELU_APPROX = {"gelu_pytorch_tanh": "tanh", "gelu": "none"}

# sinklab name (after "blocks.{i}.") -> transformers name (after "model.layers.{i}.")
GEMMA3_LAYER_NAMES = {
    "norm_attn.weight": "input_layernorm.weight",
    "norm_attn_out.weight": "post_attention_layernorm.weight",
    "norm_mlp.weight": "pre_feedforward_layernorm.weight",
    "norm_mlp_out.weight": "post_feedforward_layernorm.weight",
    "attn.wq": "self_attn.q_proj",
    "attn.wk": "self_attn.k_proj",
    "attn.wv": "self_attn.v_proj",
    "attn.wo": "self_attn.o_proj",
    "attn.q_norm": "self_attn.q_norm",
    "attn.k_norm": "self_attn.k_norm",
    "mlp.w_gate": "mlp.gate_proj",
    "mlp.w_up": "mlp.up_proj",
    "mlp.w_down": "mlp.down_proj",
}


def _rope_theta(hf_cfg: Any, layer_type: str) -> float:
    """The RoPE base of one layer type. Scaled RoPE is refused: sinklab scales every layer or
    none, while Gemma 3 (4B and up) scales only the full layers."""
    params = read(hf_cfg, "rope_parameters").get(layer_type)
    if params is None:
        raise ConversionError("rope_parameters", f"has no entry for {layer_type!r} layers")
    kind = params.get("rope_type", "default")
    if kind != "default":
        raise ConversionError(
            f"rope_parameters.{layer_type}.rope_type",
            f"{kind!r} does not convert: sinklab scales RoPE on every layer or none, not per "
            "layer type; only plain RoPE converts",
        )
    return float(params["rope_theta"])


def _softcap(hf_cfg: Any, key: str) -> float | None:
    cap = read(hf_cfg, key)
    if cap is not None and not cap > 0:
        raise ConversionError(key, f"must be positive or None, got {cap!r}")
    return None if cap is None else float(cap)


def _check_text_model(hf_cfg: Any) -> None:
    if hasattr(hf_cfg, "vision_config") or hasattr(hf_cfg, "text_config"):
        raise ConversionError(
            "model_type",
            "'gemma3' is Gemma 3's multimodal model (Gemma3ForConditionalGeneration, vision "
            "tower + text); only the text model converts: load Gemma3ForCausalLM "
            "(model_type gemma3_text)",
        )


def config_from_gemma3(hf_cfg: Any) -> ModelConfig:
    """The sinklab config computing what `Gemma3ForCausalLM` computes, or a ConversionError
    naming the transformers key sinklab cannot express."""
    _check_text_model(hf_cfg)
    check_causal(hf_cfg)
    if read(hf_cfg, "use_bidirectional_attention"):
        raise ConversionError(
            "use_bidirectional_attention",
            "True does not convert: sinklab's windows are causal (EmbeddingGemma is an encoder)",
        )
    activation = read(hf_cfg, "hidden_activation")
    if activation not in _GELU_APPROX:
        raise ConversionError(
            "hidden_activation",
            f"{activation!r} does not convert; only gelu_pytorch_tanh and gelu do",
        )
    if read(hf_cfg, "attention_bias"):
        raise ConversionError(
            "attention_bias",
            "True biases o_proj too; sinklab has an output bias only with model.bias, which "
            "also adds MLP biases Gemma 3 lacks",
        )
    if read(hf_cfg, "attn_logit_softcapping") is not None:
        raise ConversionError(
            "attn_logit_softcapping",
            "set, but transformers' Gemma3Attention never applies it (Gemma 3 dropped the "
            "attention softcap), so the scores it means are ambiguous; set it to None",
        )
    if read(hf_cfg, "sliding_window") is None and "sliding_attention" in read(
        hf_cfg, "layer_types"
    ):
        raise ConversionError(
            "sliding_window", "is None while layer_types has sliding_attention layers; set it"
        )
    window, layer_types = windows_of(hf_cfg)
    types = layer_types or ["full"] * int(read(hf_cfg, "num_hidden_layers"))
    local_theta = _rope_theta(hf_cfg, "sliding_attention") if "sliding" in types else None
    full_theta = _rope_theta(hf_cfg, "full_attention") if "full" in types else local_theta
    sizes = llama_sizes(hf_cfg)
    sizes["head_dim"] = int(read(hf_cfg, "head_dim"))  # Gemma 3 always states it
    sizes["norm_position"] = "sandwich"
    return ModelConfig(
        **sizes,
        rope_theta=full_theta,
        rope_local_theta=local_theta,
        norm_offset=1.0,
        qk_norm=True,  # q_norm / k_norm: Gemma3RMSNorm(head_dim), shared by the heads
        qk_norm_scope="head",
        mlp="geglu",
        gelu_approx=_GELU_APPROX[activation],
        bias=False,
        scale_embeddings=True,
        attn_scale=float(read(hf_cfg, "query_pre_attn_scalar")) ** -0.5,
        logit_softcap=_softcap(hf_cfg, "final_logit_softcapping"),
        sliding_window=window,
        layer_types=layer_types,
        dropout=float(getattr(hf_cfg, "attention_dropout", 0.0) or 0.0),
    )


def _gemma3_name(name: str) -> str:
    return hf_name(name, GEMMA3_LAYER_NAMES)


def weights_from_gemma3(cfg: ModelConfig, theirs: TheirWeights) -> dict[str, torch.Tensor]:
    """Every tensor unchanged under its Gemma 3 name; (1 + w) is the model's norm_offset."""
    return weights_by_name(cfg, theirs, _gemma3_name)


GEMMA3 = register(Family("gemma3_text", "Gemma 3 (text)", config_from_gemma3, weights_from_gemma3))
GEMMA3_MULTIMODAL = register(
    Family("gemma3", "Gemma 3 (text model only)", config_from_gemma3, weights_from_gemma3)
)
