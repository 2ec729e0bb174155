"""GPT-2 (`GPT2LMHeadModel`): pre-LayerNorm blocks with biases, learned absolute positions,
a tanh-approximated GELU MLP, a tied LM head.

What differs from our layout, and how it maps:
- Their linear layers are `Conv1D`: weight [in, out], applied as x @ W + b, so every matrix
  is transposed into our nn.Linear [out, in].
- `c_attn` is q | k | v fused along its output axis (three blocks of n_embd), each block
  head-major, so q/k/v are column slices and need no per-head permutation.
- `wpe` has one row per position 0 .. n_positions - 1, as our `pos_emb`.
- `gelu_new` is 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): `gelu_approx=tanh`.
- `reorder_and_upcast_attn` only changes the fp16 order of operations (scale folded into
  baddbmm, scores in fp32); our scores are fp32 already, so it converts as the same model.
- `scale_attn_weights=False` (raw q.k scores) is our `attn_scale=1`.
Refused: per-layer score scaling (`scale_attn_by_inverse_layer_idx`), cross-attention
blocks, activations we do not have.
Dropout is training-only and placed differently per family: converted models carry
`dropout=0` (set model.dropout to fine-tune).
"""

from __future__ import annotations

from typing import Any

import torch

from sinklab.model.config import ModelConfig
from sinklab.model.convert.exact import ConversionError, TheirWeights, read
from sinklab.model.convert.registry import Family, register

# transformers' activation name -> our MLP settings. Each tanh form is the same function as
# torch's gelu(approximate="tanh") up to float rounding (1e-7 relative).
_ACTIVATIONS: dict[str, dict[str, str]] = {
    "gelu": {"mlp": "gelu"},
    "gelu_python": {"mlp": "gelu"},
    "gelu_new": {"mlp": "gelu", "gelu_approx": "tanh"},
    "gelu_fast": {"mlp": "gelu", "gelu_approx": "tanh"},
    "gelu_pytorch_tanh": {"mlp": "gelu", "gelu_approx": "tanh"},
    "gelu_python_tanh": {"mlp": "gelu", "gelu_approx": "tanh"},
    "relu": {"mlp": "relu"},
}


def mlp_of_activation(key: str, name: str) -> dict[str, str]:
    """Our `mlp` (and `gelu_approx`) for their plain (non-gated) MLP activation `name`, read
    from their config key `key`; any other activation is refused."""
    if name not in _ACTIVATIONS:
        raise ConversionError(
            key,
            f"activation {name!r} has no exact sinklab MLP; supported: {', '.join(_ACTIVATIONS)}",
        )
    return dict(_ACTIVATIONS[name])


def config_from_gpt2(hf: Any) -> ModelConfig:
    """The sinklab config of a transformers GPT-2 config, or a ConversionError naming the key."""
    if read(hf, "scale_attn_by_inverse_layer_idx"):
        raise ConversionError(
            "scale_attn_by_inverse_layer_idx",
            "True divides layer i's scores by i + 1; sinklab scales every layer alike",
        )
    if read(hf, "add_cross_attention"):
        raise ConversionError(
            "add_cross_attention",
            "True adds cross-attention blocks; sinklab's model is decoder-only",
        )
    d_model = int(read(hf, "n_embd"))
    n_inner = read(hf, "n_inner")
    return ModelConfig(
        vocab_size=int(read(hf, "vocab_size")),
        d_model=d_model,
        n_layers=int(read(hf, "n_layer")),
        n_heads=int(read(hf, "n_head")),
        d_ff=4 * d_model if n_inner is None else int(n_inner),  # GPT-2's rule for None
        max_seq_len=int(read(hf, "n_positions")),
        pos="learned",
        norm="layernorm",
        norm_eps=float(read(hf, "layer_norm_epsilon")),
        norm_position="pre",
        bias=True,
        tie_embeddings=bool(read(hf, "tie_word_embeddings")),
        dropout=0.0,
        init_std=float(read(hf, "initializer_range")),
        attention="softmax",
        # scale_attn_weights=False: raw q.k scores, our attn_scale=1; True: 1/sqrt(head_dim)
        attn_scale=None if read(hf, "scale_attn_weights") else 1.0,
        **mlp_of_activation("activation_function", read(hf, "activation_function")),
    )


def _linear(theirs: TheirWeights, prefix: str, ours: str) -> dict[str, torch.Tensor]:
    """A Conv1D (weight [in, out]) as our nn.Linear `ours` (weight [out, in])."""
    return {
        f"{ours}.weight": theirs.take(f"{prefix}.weight").t(),
        f"{ours}.bias": theirs.take(f"{prefix}.bias"),
    }


def weights_from_gpt2(cfg: ModelConfig, theirs: TheirWeights) -> dict[str, torch.Tensor]:
    """Our state dict from a GPT2LMHeadModel state dict (keys `transformer.*`, `lm_head.weight`)."""
    d = cfg.d_model
    ours = {
        "tok_emb.weight": theirs.take("transformer.wte.weight"),
        "pos_emb.weight": theirs.take("transformer.wpe.weight"),
    }
    for i in range(cfg.n_layers):
        theirs_i, ours_i = f"transformer.h.{i}", f"blocks.{i}"
        # Saved by older transformers (the causal mask and its fill value); rebuilt per forward.
        for buffer in ("attn.bias", "attn.masked_bias"):
            theirs.skip(f"{theirs_i}.{buffer}", "causal-mask buffer, not a weight")
        ours.update(theirs.take_module(f"{theirs_i}.ln_1", f"{ours_i}.norm_attn"))
        qkv_w = theirs.take(f"{theirs_i}.attn.c_attn.weight")  # [d, 3d]: columns q | k | v
        qkv_b = theirs.take(f"{theirs_i}.attn.c_attn.bias")
        if tuple(qkv_w.shape) != (d, 3 * d) or tuple(qkv_b.shape) != (3 * d,):
            raise ConversionError(
                "weights",
                f"{theirs.source}: {theirs_i}.attn.c_attn has shapes {tuple(qkv_w.shape)} / "
                f"{tuple(qkv_b.shape)}, expected {(d, 3 * d)} / {(3 * d,)}",
            )
        for j, name in enumerate(("wq", "wk", "wv")):
            ours[f"{ours_i}.attn.{name}.weight"] = qkv_w[:, j * d : (j + 1) * d].t()
            ours[f"{ours_i}.attn.{name}.bias"] = qkv_b[j * d : (j + 1) * d]
        ours.update(_linear(theirs, f"{theirs_i}.attn.c_proj", f"{ours_i}.attn.wo"))
        ours.update(theirs.take_module(f"{theirs_i}.ln_2", f"{ours_i}.norm_mlp"))
        ours.update(_linear(theirs, f"{theirs_i}.mlp.c_fc", f"{ours_i}.mlp.w_up"))
        ours.update(_linear(theirs, f"{theirs_i}.mlp.c_proj", f"{ours_i}.mlp.w_down"))
    ours.update(theirs.take_module("transformer.ln_f", "norm_final"))
    ours.update(theirs.take_head(cfg.tie_embeddings, ours["tok_emb.weight"]))
    return {name: t.contiguous() for name, t in ours.items()}


GPT2 = register(Family("gpt2", "GPT-2", config_from_gpt2, weights_from_gpt2))
