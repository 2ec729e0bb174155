"""GPT-NeoX (Pythia): LayerNorm blocks with biases, partial rotary embeddings, a GELU MLP, an
untied LM head (`embed_out`, `lm_head` in transformers), and usually a parallel residual.

What differs from our layout, and how it maps:
- `query_key_value` is fused per head: its output rows are laid out [heads, (q, k, v),
  head_dim] (transformers views the projection as [..., heads, 3 * head_dim] and chunks the
  last axis), so each of wq/wk/wv is every head's slice of that block, not a third of the
  rows.
- RoPE turns the first int(head_dim x rotary_pct) dims of each head in the rotate-half layout,
  the rest pass: our `rotary_pct` (their `partial_rotary_factor`, `rotary_pct` before v5) with
  `rope_theta` (their `rotary_emb_base`). Linear and dynamic scaling map to our
  `rope_scaling`; other RoPE types are refused.
- `use_parallel_residual=True`: x + attn(ln1(x)) + mlp(ln2(x)), our `parallel_block`; False:
  the usual sequential pre-norm block with ln2 as `norm_mlp`.
- LayerNorms and MLP linears always have biases; attention's follow `attention_bias`, so
  `attention_bias=False` is refused (sinklab's `bias` covers every layer).
Dropout is training-only: converted models carry `dropout=0`.
"""

from __future__ import annotations

from typing import Any

import torch

from sinklab.model.config import ModelConfig
from sinklab.model.convert.exact import ConversionError, TheirWeights, read
from sinklab.model.convert.gpt2 import mlp_of_activation
from sinklab.model.convert.llama import rope_settings
from sinklab.model.convert.registry import Family, register

_ROPE_SCALINGS = ("linear", "dynamic")  # transformers' rope_type names that ours share


def _rope(hf: Any) -> dict[str, Any]:
    """rope_theta, rotary_pct and rope_scaling from their RoPE parameters."""
    kind, theta, params = rope_settings(hf)
    settings: dict[str, Any] = {
        "rope_theta": theta,
        # transformers' own default when the key is absent (GPTNeoXAttention reads it so)
        "rotary_pct": float(params.get("partial_rotary_factor", 1.0)),
    }
    if kind == "default":
        return settings
    if kind not in _ROPE_SCALINGS:
        raise ConversionError(
            "rope_parameters",
            f"rope_type {kind!r} has no sinklab equivalent; supported: default, {', '.join(_ROPE_SCALINGS)}",
        )
    settings["rope_scaling"] = {"type": kind, "factor": float(params["factor"])}
    return settings


def config_from_gpt_neox(hf: Any) -> ModelConfig:
    """The sinklab config of a transformers GPT-NeoX config, or a ConversionError naming the key."""
    if not read(hf, "attention_bias"):
        raise ConversionError(
            "attention_bias",
            "False drops attention biases while GPT-NeoX's MLP and LayerNorms keep theirs; "
            "sinklab's bias covers every layer",
        )
    d_model, n_heads = int(read(hf, "hidden_size")), int(read(hf, "num_attention_heads"))
    return ModelConfig(
        vocab_size=int(read(hf, "vocab_size")),
        d_model=d_model,
        n_layers=int(read(hf, "num_hidden_layers")),
        n_heads=n_heads,
        head_dim=d_model // n_heads,  # GPTNeoXAttention.head_size
        d_ff=int(read(hf, "intermediate_size")),
        max_seq_len=int(read(hf, "max_position_embeddings")),
        pos="rope",
        **_rope(hf),
        norm="layernorm",
        norm_eps=float(read(hf, "layer_norm_eps")),
        norm_position="pre",
        parallel_block=bool(read(hf, "use_parallel_residual")),
        bias=True,
        tie_embeddings=bool(read(hf, "tie_word_embeddings")),
        dropout=0.0,
        init_std=float(read(hf, "initializer_range")),
        attention="softmax",
        **mlp_of_activation("hidden_act", read(hf, "hidden_act")),
    )


def _split_qkv(
    cfg: ModelConfig, theirs: TheirWeights, prefix: str, ours: str
) -> dict[str, torch.Tensor]:
    """wq/wk/wv from the per-head fused `query_key_value` ([H, (q, k, v), hd] rows)."""
    H, hd, d = cfg.n_heads, cfg.head_dim, cfg.d_model
    assert hd is not None
    weight = theirs.take(f"{prefix}.weight")
    bias = theirs.take(f"{prefix}.bias")
    if tuple(weight.shape) != (3 * H * hd, d) or tuple(bias.shape) != (3 * H * hd,):
        raise ConversionError(
            "weights",
            f"{theirs.source}: {prefix} has shapes {tuple(weight.shape)} / {tuple(bias.shape)}, "
            f"expected {(3 * H * hd, d)} / {(3 * H * hd,)}",
        )
    weight, bias = weight.view(H, 3, hd, d), bias.view(H, 3, hd)
    out = {}
    for j, name in enumerate(("wq", "wk", "wv")):
        out[f"{ours}.{name}.weight"] = weight[:, j].reshape(H * hd, d)
        out[f"{ours}.{name}.bias"] = bias[:, j].reshape(H * hd)
    return out


def weights_from_gpt_neox(cfg: ModelConfig, theirs: TheirWeights) -> dict[str, torch.Tensor]:
    """Our state dict from a GPTNeoXForCausalLM state dict (keys `gpt_neox.*`, `lm_head.weight`)."""
    ours = {"tok_emb.weight": theirs.take("gpt_neox.embed_in.weight")}
    for i in range(cfg.n_layers):
        theirs_i, ours_i = f"gpt_neox.layers.{i}", f"blocks.{i}"
        for buffer in ("attention.bias", "attention.masked_bias", "attention.rotary_emb.inv_freq"):
            # saved by transformers before v4.4x; recomputed from the config, not weights
            theirs.skip(f"{theirs_i}.{buffer}", "mask / RoPE-frequency buffer, not a weight")
        ours.update(theirs.take_module(f"{theirs_i}.input_layernorm", f"{ours_i}.norm_attn"))
        ours.update(
            _split_qkv(cfg, theirs, f"{theirs_i}.attention.query_key_value", f"{ours_i}.attn")
        )
        ours.update(theirs.take_module(f"{theirs_i}.attention.dense", f"{ours_i}.attn.wo"))
        ours.update(
            theirs.take_module(f"{theirs_i}.post_attention_layernorm", f"{ours_i}.norm_mlp")
        )
        ours.update(theirs.take_module(f"{theirs_i}.mlp.dense_h_to_4h", f"{ours_i}.mlp.w_up"))
        ours.update(theirs.take_module(f"{theirs_i}.mlp.dense_4h_to_h", f"{ours_i}.mlp.w_down"))
    ours.update(theirs.take_module("gpt_neox.final_layer_norm", "norm_final"))
    ours.update(theirs.take_head(cfg.tie_embeddings, ours["tok_emb.weight"]))
    return {name: t.contiguous() for name, t in ours.items()}


GPT_NEOX = register(
    Family("gpt_neox", "GPT-NeoX (Pythia)", config_from_gpt_neox, weights_from_gpt_neox)
)
