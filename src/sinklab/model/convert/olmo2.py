"""OLMo 2 (`Olmo2ForCausalLM`, model_type `olmo2`): Llama with its norms moved.

No input norms: each sublayer's output is normed inside the residual (post_attention_layernorm,
post_feedforward_layernorm: `norm_position=reordered`, x + norm(f(x))), and q and k are
RMSNormed over the whole projection before the split into heads (`qk_norm_scope=projection`).

`attention_bias=True` biases o_proj as well as q/k/v (the MLP has none); sinklab has an output
bias only with model.bias, which also adds MLP biases, so that case is refused.
"""

from __future__ import annotations

from typing import Any

import torch

from sinklab.model.config import ModelConfig
from sinklab.model.convert.exact import ConversionError, TheirWeights, read
from sinklab.model.convert.llama import hf_name, llama_sizes, weights_by_name
from sinklab.model.convert.qwen2 import check_causal, check_silu, rope_of
from sinklab.model.convert.registry import Family, register

# sinklab name (after "blocks.{i}.") -> transformers name (after "model.layers.{i}.")
OLMO2_LAYER_NAMES = {
    "norm_attn_out.weight": "post_attention_layernorm.weight",
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


def config_from_olmo2(hf_cfg: Any) -> ModelConfig:
    """The sinklab config computing what `Olmo2ForCausalLM` computes, or a ConversionError
    naming the transformers key sinklab cannot express."""
    check_silu(hf_cfg)
    check_causal(hf_cfg)
    if read(hf_cfg, "attention_bias"):
        raise ConversionError(
            "attention_bias",
            "True biases o_proj too; sinklab has an output bias only with model.bias, which "
            "also adds MLP biases OLMo 2 lacks",
        )
    theta, scaling = rope_of(hf_cfg)
    sizes = llama_sizes(hf_cfg)  # head_dim: hidden_size / heads, as Olmo2Attention's default
    sizes["norm_position"] = "reordered"
    return ModelConfig(
        **sizes,
        rope_theta=theta,
        rope_scaling=scaling,
        mlp="swiglu",
        bias=False,
        qk_norm=True,  # q_norm: RMSNorm(heads * head_dim), k_norm: RMSNorm(kv_heads * head_dim)
        qk_norm_scope="projection",
        dropout=float(getattr(hf_cfg, "attention_dropout", 0.0) or 0.0),
    )


def _olmo2_name(name: str) -> str:
    return hf_name(name, OLMO2_LAYER_NAMES)


def weights_from_olmo2(cfg: ModelConfig, theirs: TheirWeights) -> dict[str, torch.Tensor]:
    """Every tensor unchanged under its OLMo 2 name."""
    return weights_by_name(cfg, theirs, _olmo2_name)


OLMO2 = register(Family("olmo2", "OLMo 2", config_from_olmo2, weights_from_olmo2))
