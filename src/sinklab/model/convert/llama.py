"""Llama (and SmolLM2): sinklab's defaults are Llama, so conversion is a renaming of tensors.

Pre-RMSNorm, SwiGLU, RoPE in the rotate-half layout, softmax attention. `to_hf_llama` goes back
for configs Llama can express; anything else is refused with a `ConfigError` naming the key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from sinklab.errors import ConfigError
from sinklab.model.config import ModelConfig
from sinklab.model.convert.exact import ConversionError, TheirWeights, read
from sinklab.model.convert.loading import from_hf
from sinklab.model.convert.registry import Family, register
from sinklab.model.transformer import Transformer

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM

# sinklab name (per layer, after "blocks.{i}.") -> HF name (after "model.layers.{i}.")
LAYER_NAMES = {
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
TOP_NAMES = {
    "tok_emb.weight": "model.embed_tokens.weight",
    "norm_final.weight": "model.norm.weight",
    "lm_head.weight": "lm_head.weight",
}


def hf_name(name: str, layer_names: dict[str, str] = LAYER_NAMES) -> str:
    """The transformers name of sinklab parameter `name` in a Llama-layout checkpoint."""
    if name in TOP_NAMES:
        return TOP_NAMES[name]
    _, layer, rest = name.split(".", 2)  # "blocks.{i}.<rest>"
    for ours, theirs in layer_names.items():
        if rest.startswith(ours):
            return f"model.layers.{layer}.{theirs}{rest[len(ours) :]}"
    raise KeyError(f"no Hugging Face Llama name for parameter {name!r}")


def rope_settings(hf_cfg: Any) -> tuple[str, float, dict[str, Any]]:
    """(rope_type, rope_theta, all parameters) across transformers versions
    (`rope_parameters` from v5, `rope_scaling` + `rope_theta` before)."""
    params = getattr(hf_cfg, "rope_parameters", None)
    if params:
        if "rope_theta" not in params and all(isinstance(v, dict) for v in params.values()):
            raise ConversionError(
                "rope_parameters", "per-layer-type RoPE parameters; this family reads one set"
            )
        return params.get("rope_type", "default"), float(params["rope_theta"]), dict(params)
    scaling = getattr(hf_cfg, "rope_scaling", None) or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    return kind, float(read(hf_cfg, "rope_theta")), dict(scaling)


def plain_rope_theta(hf_cfg: Any) -> float:
    """rope_theta of a config with plain RoPE; any scaling is refused (it would change scores)."""
    kind, theta, _ = rope_settings(hf_cfg)
    if kind != "default":
        raise ConversionError("rope_scaling", f"only plain RoPE converts; this model uses {kind!r}")
    return theta


def head_dim_of(hf_cfg: Any) -> int:
    """The explicit head_dim, or hidden_size / num_attention_heads where the config has none."""
    head_dim = getattr(hf_cfg, "head_dim", None)
    if head_dim:
        return int(head_dim)
    return int(read(hf_cfg, "hidden_size")) // int(read(hf_cfg, "num_attention_heads"))


def llama_sizes(hf_cfg: Any) -> dict[str, Any]:
    """The ModelConfig fields every Llama-layout family shares, read from their config."""
    heads = int(read(hf_cfg, "num_attention_heads"))
    return dict(
        vocab_size=int(read(hf_cfg, "vocab_size")),
        d_model=int(read(hf_cfg, "hidden_size")),
        n_layers=int(read(hf_cfg, "num_hidden_layers")),
        n_heads=heads,
        n_kv_heads=int(getattr(hf_cfg, "num_key_value_heads", None) or heads),
        head_dim=head_dim_of(hf_cfg),
        d_ff=int(read(hf_cfg, "intermediate_size")),
        max_seq_len=int(read(hf_cfg, "max_position_embeddings")),
        pos="rope",
        norm="rmsnorm",
        norm_eps=float(read(hf_cfg, "rms_norm_eps")),
        norm_position="pre",
        tie_embeddings=bool(read(hf_cfg, "tie_word_embeddings")),
        init_std=float(getattr(hf_cfg, "initializer_range", 0.02)),
        attention="softmax",
    )


def config_from_llama(hf_cfg: Any) -> ModelConfig:
    """The sinklab config equivalent to a Hugging Face Llama config, or a ConversionError."""
    theta = plain_rope_theta(hf_cfg)
    if read(hf_cfg, "hidden_act") != "silu":
        raise ConversionError(
            "hidden_act", f"only silu (SwiGLU) converts, got {hf_cfg.hidden_act!r}"
        )
    attn_bias, mlp_bias = (
        bool(read(hf_cfg, "attention_bias")),
        bool(getattr(hf_cfg, "mlp_bias", False)),
    )
    if attn_bias != mlp_bias:
        raise ConversionError("mlp_bias", "sinklab's model.bias covers attention and MLP together")
    if getattr(hf_cfg, "pretraining_tp", 1) not in (None, 1):
        raise ConversionError(
            "pretraining_tp", "tensor-parallel slicing of the MLP is not modelled"
        )
    return ModelConfig(
        **llama_sizes(hf_cfg),
        rope_theta=theta,
        mlp="swiglu",
        bias=attn_bias,
        dropout=float(getattr(hf_cfg, "attention_dropout", 0.0) or 0.0),
    )


def weights_by_name(
    cfg: ModelConfig, theirs: TheirWeights, name_of: Any = hf_name
) -> dict[str, torch.Tensor]:
    """Our tensors, each taken from their checkpoint under `name_of(our name)`; a tied LM head
    is checked against the embedding and consumed."""
    model_names = _parameter_names(cfg)
    ours = {name: theirs.take(name_of(name)) for name in model_names}
    if cfg.tie_embeddings:
        theirs.take_tied(name_of("lm_head.weight"), ours["tok_emb.weight"])
    return ours


def _parameter_names(cfg: ModelConfig) -> list[str]:
    """Our parameter names for `cfg` (tied ones once), without building the weights."""
    with torch.device("meta"):
        return [name for name, _ in Transformer(cfg).named_parameters()]


def weights_from_llama(cfg: ModelConfig, theirs: TheirWeights) -> dict[str, torch.Tensor]:
    return weights_by_name(cfg, theirs)


LLAMA = register(Family("llama", "Llama", config_from_llama, weights_from_llama))


def from_hf_llama(hf_model: LlamaForCausalLM) -> Transformer:
    """A sinklab `Transformer` (fp32) with the weights of a transformers `LlamaForCausalLM`."""
    if hf_model.config.model_type != "llama":
        raise ConversionError("model_type", f"{hf_model.config.model_type!r} is not Llama")
    return from_hf(hf_model)


def check_llama_compatible(cfg: ModelConfig) -> None:
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
    check_llama_compatible(cfg)
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
            theirs[hf_name(name)].copy_(p)
    return hf_model.eval()
