"""OPT (`OPTForCausalLM`): pre-LayerNorm blocks, learned absolute positions, a ReLU MLP with
biases, a tied LM head.

What differs from our layout, and how it maps:
- Positions: their table has max_position_embeddings + 2 rows and position p reads row p + 2
  (fairseq's padding offset). Their position ids come from the attention mask's cumsum, so an
  unpadded token at position p >= 0 never reads rows 0 and 1: only padded tokens (position
  -1, row 1) do. sinklab has no padding, so our `pos_emb` is their rows 2: (row p = position p)
  and rows 0-1 are dropped.
- Attention: they scale q by head_dim**-0.5 before q k^T, we scale the scores after: the same
  numbers up to float rounding.
- `layer_norm_elementwise_affine=False`: their LayerNorms have no parameters; ours get gains of
  one (and, with `enable_bias`, biases of zero), which is the same function.
- LayerNorm eps: OPT's layers use nn.LayerNorm's default, 1e-5 (no config key holds it).
Refused: post-LayerNorm (`do_layer_norm_before=False`, OPT-350m), a projected embedding
(`word_embed_proj_dim` != hidden_size: project_in/out), a missing final LayerNorm
(`_remove_final_layer_norm`), `enable_bias=False` with affine LayerNorms (their norms keep
biases that sinklab's `bias=false` drops). Dropout and layerdrop are training-only: converted
models carry `dropout=0`.
"""

from __future__ import annotations

from typing import Any

import torch

from sinklab.model.config import ModelConfig
from sinklab.model.convert.exact import ConversionError, TheirWeights, read
from sinklab.model.convert.gpt2 import mlp_of_activation
from sinklab.model.convert.registry import Family, register

POSITION_OFFSET = 2  # OPTLearnedPositionalEmbedding.offset: position p reads row p + 2
LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, which every OPT LayerNorm uses

# our name (after "blocks.{i}.") -> theirs (after "model.decoder.layers.{i}.")
_LAYER_LINEARS = {
    "attn.wq": "self_attn.q_proj",
    "attn.wk": "self_attn.k_proj",
    "attn.wv": "self_attn.v_proj",
    "attn.wo": "self_attn.out_proj",
    "mlp.w_up": "fc1",
    "mlp.w_down": "fc2",
}
_LAYER_NORMS = {"norm_attn": "self_attn_layer_norm", "norm_mlp": "final_layer_norm"}


def config_from_opt(hf: Any) -> ModelConfig:
    """The sinklab config of a transformers OPT config, or a ConversionError naming the key."""
    if not read(hf, "do_layer_norm_before"):
        raise ConversionError(
            "do_layer_norm_before",
            "False (post-LayerNorm, as OPT-350m) has no final norm; sinklab's post-norm model has one",
        )
    d_model = int(read(hf, "hidden_size"))
    proj = read(hf, "word_embed_proj_dim")
    if proj is not None and int(proj) != d_model:
        raise ConversionError(
            "word_embed_proj_dim",
            f"{proj} != hidden_size {d_model} needs project_in/project_out, which sinklab lacks",
        )
    if read(hf, "_remove_final_layer_norm"):
        raise ConversionError(
            "_remove_final_layer_norm", "True drops the final LayerNorm; sinklab always has one"
        )
    bias, affine = bool(read(hf, "enable_bias")), bool(read(hf, "layer_norm_elementwise_affine"))
    if affine and not bias:
        raise ConversionError(
            "enable_bias",
            "False with layer_norm_elementwise_affine=True keeps LayerNorm biases, which "
            "sinklab's bias=false drops",
        )
    return ModelConfig(
        vocab_size=int(read(hf, "vocab_size")),
        d_model=d_model,
        n_layers=int(read(hf, "num_hidden_layers")),
        n_heads=int(read(hf, "num_attention_heads")),
        d_ff=int(read(hf, "ffn_dim")),
        max_seq_len=int(read(hf, "max_position_embeddings")),
        pos="learned",
        norm="layernorm",
        norm_eps=LAYER_NORM_EPS,
        norm_position="pre",
        bias=bias,
        tie_embeddings=bool(read(hf, "tie_word_embeddings")),
        dropout=0.0,
        init_std=float(read(hf, "init_std")),
        attention="softmax",
        **mlp_of_activation("activation_function", read(hf, "activation_function")),
    )


def _norm(
    cfg: ModelConfig, theirs: TheirWeights, prefix: str, ours: str, affine: bool
) -> dict[str, torch.Tensor]:
    """A LayerNorm; without their parameters (elementwise_affine=False) the identity gain/bias."""
    if not affine:
        out = {f"{ours}.weight": torch.ones(cfg.d_model)}
        if cfg.bias:
            out[f"{ours}.bias"] = torch.zeros(cfg.d_model)
        return out
    return theirs.take_module(prefix, ours)


def weights_from_opt(cfg: ModelConfig, theirs: TheirWeights) -> dict[str, torch.Tensor]:
    """Our state dict from an OPTForCausalLM state dict (keys `model.decoder.*`, `lm_head.weight`)."""
    table = theirs.take("model.decoder.embed_positions.weight")
    rows = cfg.max_seq_len + POSITION_OFFSET
    if table.shape[0] != rows:
        raise ConversionError(
            "max_position_embeddings",
            f"{theirs.source}: the position table has {table.shape[0]} rows, expected "
            f"max_position_embeddings + {POSITION_OFFSET} = {rows}",
        )
    ours = {
        "tok_emb.weight": theirs.take("model.decoder.embed_tokens.weight"),
        "pos_emb.weight": table[POSITION_OFFSET:],
    }
    # One decision for every norm, so a checkpoint missing some gains is refused, not patched.
    affine = "model.decoder.final_layer_norm.weight" in theirs
    for i in range(cfg.n_layers):
        theirs_i, ours_i = f"model.decoder.layers.{i}", f"blocks.{i}"
        for mine, name in _LAYER_NORMS.items():
            ours.update(_norm(cfg, theirs, f"{theirs_i}.{name}", f"{ours_i}.{mine}", affine))
        for mine, name in _LAYER_LINEARS.items():
            ours.update(theirs.take_module(f"{theirs_i}.{name}", f"{ours_i}.{mine}", cfg.bias))
    ours.update(_norm(cfg, theirs, "model.decoder.final_layer_norm", "norm_final", affine))
    ours.update(theirs.take_head(cfg.tie_embeddings, ours["tok_emb.weight"]))
    return {name: t.contiguous() for name, t in ours.items()}


OPT = register(Family("opt", "OPT", config_from_opt, weights_from_opt))
