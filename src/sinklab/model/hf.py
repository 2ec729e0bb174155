"""Conversion to and from Hugging Face `LlamaForCausalLM`.

sinklab's defaults (pre-RMSNorm, SwiGLU, RoPE in the rotate-half layout, softmax attention)
are Llama, so conversion is a renaming of tensors. Configs Llama cannot express are refused
with a `ConfigError` naming the key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from sinklab.errors import ConfigError
from sinklab.model.config import ModelConfig
from sinklab.model.transformer import Transformer

if TYPE_CHECKING:
    from transformers import LlamaConfig, LlamaForCausalLM

# sinklab name (per layer, after "blocks.{i}.") -> HF name (after "model.layers.{i}.")
_LAYER_NAMES = {
    "norm_attn.weight": "input_layernorm.weight",
    "attn.wq": "self_attn.q_proj",
    "attn.wk": "self_attn.k_proj",
    "attn.wv": "self_attn.v_proj",
    "attn.wo": "self_attn.o_proj",
    "norm_mlp.weight": "post_attention_layernorm.weight",
    "mlp.w_gate": "mlp.gate_proj",
    "mlp.w_up": "mlp.up_proj",
    "mlp.w_down": "mlp.down_proj",
}
_TOP_NAMES = {
    "tok_emb.weight": "model.embed_tokens.weight",
    "norm_final.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}


def _hf_name(name: str) -> str:
    if name in _TOP_NAMES:
        return _TOP_NAMES[name]
    _, layer, rest = name.split(".", 2)  # "blocks.{i}.<rest>"
    for ours, theirs in _LAYER_NAMES.items():
        if rest.startswith(ours):
            return f"model.layers.{layer}.{theirs}{rest[len(ours) :]}"
    raise KeyError(f"no Hugging Face Llama name for parameter {name!r}")


def _rope(hf_cfg: Any) -> tuple[str, float]:
    """(rope_type, rope_theta) across transformers versions (`rope_parameters` from v5)."""
    params = getattr(hf_cfg, "rope_parameters", None)
    if params:
        return params.get("rope_type", "default"), float(params["rope_theta"])
    scaling = getattr(hf_cfg, "rope_scaling", None) or {}
    return scaling.get("rope_type", scaling.get("type", "default")), float(hf_cfg.rope_theta)


def config_from_hf(hf_cfg: LlamaConfig) -> ModelConfig:
    """The sinklab config equivalent to a Hugging Face Llama config, or a ConfigError."""
    rope_type, theta = _rope(hf_cfg)
    if rope_type != "default":
        raise ConfigError(
            "rope_scaling", f"only plain RoPE converts; this model uses {rope_type!r}"
        )
    if hf_cfg.hidden_act != "silu":
        raise ConfigError("hidden_act", f"only silu (SwiGLU) converts, got {hf_cfg.hidden_act!r}")
    attn_bias, mlp_bias = bool(hf_cfg.attention_bias), bool(getattr(hf_cfg, "mlp_bias", False))
    if attn_bias != mlp_bias:
        raise ConfigError("mlp_bias", "sinklab's model.bias covers attention and MLP together")
    head_dim = getattr(hf_cfg, "head_dim", None) or hf_cfg.hidden_size // hf_cfg.num_attention_heads
    return ModelConfig(
        vocab_size=hf_cfg.vocab_size,
        d_model=hf_cfg.hidden_size,
        n_layers=hf_cfg.num_hidden_layers,
        n_heads=hf_cfg.num_attention_heads,
        n_kv_heads=hf_cfg.num_key_value_heads or hf_cfg.num_attention_heads,
        head_dim=head_dim,
        d_ff=hf_cfg.intermediate_size,
        max_seq_len=hf_cfg.max_position_embeddings,
        pos="rope",
        rope_theta=theta,
        norm="rmsnorm",
        norm_eps=hf_cfg.rms_norm_eps,
        norm_position="pre",
        qk_norm=False,
        mlp="swiglu",
        bias=attn_bias,
        tie_embeddings=bool(hf_cfg.tie_word_embeddings),
        dropout=float(getattr(hf_cfg, "attention_dropout", 0.0) or 0.0),
        init_std=float(getattr(hf_cfg, "initializer_range", 0.02)),
        attention="softmax",
    )


def from_hf_llama(hf_model: LlamaForCausalLM) -> Transformer:
    """A sinklab `Transformer` (fp32) with the weights of a transformers `LlamaForCausalLM`."""
    cfg = config_from_hf(hf_model.config)
    model = Transformer(cfg)
    theirs = hf_model.state_dict()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(theirs[_hf_name(name)])
    return model


def _check_llama_compatible(cfg: ModelConfig) -> None:
    required = {
        "pos": "rope",
        "rotary_pct": 1.0,  # Llama rotates every dim of a head
        "rope_scaling": None,  # exported as plain RoPE, so a scaled model would change silently
        "norm": "rmsnorm",
        "norm_position": "pre",
        "qk_norm": False,
        "mlp": "swiglu",
        "attention": "softmax",
        "n_sink_tokens": 0,
        "kv_bias": False,
    }
    if not cfg.causal:  # its weights would load and run, silently as a different, causal model
        raise ConfigError(
            "model.causal",
            "an encoder (causal=false) has no exact Hugging Face class: LlamaForCausalLM masks "
            "the future; keep it as a sinklab checkpoint",
        )
    for key, value in required.items():
        if getattr(cfg, key) != value:
            raise ConfigError(
                f"model.{key}",
                f"Llama cannot express {key}={getattr(cfg, key)!r}; to_hf_llama needs {value!r}",
            )


def to_hf_llama(model: Transformer) -> LlamaForCausalLM:
    """A transformers `LlamaForCausalLM` with this model's weights, for Llama-expressible configs."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = model.cfg
    _check_llama_compatible(cfg)
    hf_cfg = LlamaConfig(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.d_ff,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim,
        hidden_act="silu",
        max_position_embeddings=cfg.max_seq_len,
        rms_norm_eps=cfg.norm_eps,
        tie_word_embeddings=cfg.tie_embeddings,
        rope_theta=cfg.rope_theta,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        attention_bias=cfg.bias,
        mlp_bias=cfg.bias,
        attention_dropout=cfg.dropout,
        initializer_range=cfg.init_std,
    )
    hf_model = LlamaForCausalLM(hf_cfg)
    theirs = dict(hf_model.named_parameters())
    with torch.no_grad():
        for name, p in model.named_parameters():
            theirs[_hf_name(name)].copy_(p)
    return hf_model.eval()
