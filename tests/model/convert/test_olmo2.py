"""OLMo 2 converts exactly: logits and attention probabilities of random tiny
`Olmo2ForCausalLM`s, and every option sinklab cannot express refused with its key."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from sinklab.model.convert import from_hf
from sinklab.model.convert.exact import ConversionError
from sinklab.model.convert.olmo2 import config_from_olmo2

from .equivalence import assert_same_attention, assert_same_logits, randomize

transformers = pytest.importorskip("transformers")


def _config(**overrides) -> transformers.Olmo2Config:
    values = dict(
        vocab_size=72,
        hidden_size=32,
        intermediate_size=56,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rope_parameters={"rope_type": "default", "rope_theta": 300.0},
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        eos_token_id=1,
        pad_token_id=0,
        attn_implementation="eager",
    )
    values.update(overrides)
    return transformers.Olmo2Config(**values)


def _model(**overrides) -> transformers.Olmo2ForCausalLM:
    return randomize(transformers.Olmo2ForCausalLM(_config(**overrides)).eval(), seed=0)


def _ids() -> torch.Tensor:
    return torch.randint(0, 72, (2, 12), generator=torch.Generator().manual_seed(1))


CASES = {
    "untied-gqa": dict(),
    "tied-mha": dict(tie_word_embeddings=True, num_key_value_heads=4),
    "mqa": dict(num_key_value_heads=1),
    "linear-rope": dict(
        rope_parameters={"rope_type": "linear", "factor": 4.0, "rope_theta": 300.0}
    ),
}


@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_logits_and_attention_match_transformers(overrides: dict) -> None:
    hf = _model(**overrides)
    ours = from_hf(hf).eval()
    ids = _ids()
    assert_same_logits(hf, ours, ids, atol=1e-4)
    assert_same_attention(hf, ours, ids, atol=1e-5)


def test_the_config_carries_olmo2s_norms() -> None:
    cfg = config_from_olmo2(_config(num_key_value_heads=1))
    assert (cfg.norm_position, cfg.qk_norm, cfg.qk_norm_scope) == ("reordered", True, "projection")
    assert (cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_ff) == (32, 4, 1, 8, 56)
    assert (cfg.rope_theta, cfg.norm_eps, cfg.tie_embeddings) == (300.0, 1e-6, False)


def test_olmo2_1b_config_json_reads_as_published() -> None:
    """A hub config.json of OLMo 2 (allenai/OLMo-2-0425-1B's sizes; pre-v5 keys: top-level
    rope_theta, rope_scaling null), read through transformers as from_pretrained does."""
    hub = dict(
        vocab_size=100352,
        hidden_size=2048,
        intermediate_size=8192,
        num_hidden_layers=16,
        num_attention_heads=16,
        num_key_value_heads=16,
        hidden_act="silu",
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        rope_theta=500000,
        rope_scaling=None,
        attention_bias=False,
        tie_word_embeddings=False,
        eos_token_id=100257,
        pad_token_id=100277,
    )
    cfg = config_from_olmo2(transformers.Olmo2Config(**hub))
    assert (cfg.rope_theta, cfg.rope_scaling, cfg.head_dim, cfg.n_kv_heads) == (5e5, None, 128, 16)
    assert (cfg.d_model, cfg.n_layers, cfg.d_ff, cfg.vocab_size) == (2048, 16, 8192, 100352)
    assert (cfg.norm_eps, cfg.max_seq_len, cfg.tie_embeddings) == (1e-6, 4096, False)


REFUSALS = {
    "not causal": (
        dict(is_causal=False),
        "is_causal: False (bidirectional attention) does not convert; only causal decoders",
    ),
    "activation": (
        dict(hidden_act="gelu"),
        "hidden_act: only silu (SwiGLU) converts, got 'gelu'",
    ),
    "attention_bias": (
        dict(attention_bias=True),
        "attention_bias: True biases o_proj too; sinklab has an output bias only with "
        "model.bias, which also adds MLP biases OLMo 2 lacks",
    ),
    "rope scaling": (
        dict(rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 300.0}),
        "rope_scaling: rope_type 'yarn' has no exact sinklab form (default, linear and dynamic "
        "convert)",
    ),
}


@pytest.mark.parametrize("overrides,message", REFUSALS.values(), ids=REFUSALS.keys())
def test_options_sinklab_cannot_express_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ConversionError) as err:
        config_from_olmo2(_config(**overrides))
    assert str(err.value) == message


def test_a_tampered_state_dict_is_refused_naming_the_tensor() -> None:
    extra = _model()
    extra.model.layers[0].mlp.register_buffer("stray", torch.zeros(2))
    with pytest.raises(ConversionError, match=re.escape("model.layers.0.mlp.stray")):
        from_hf(extra)

    missing = _model()
    missing.model.layers[1].post_feedforward_layernorm = nn.Identity()
    with pytest.raises(
        ConversionError, match=re.escape("model.layers.1.post_feedforward_layernorm.weight")
    ):
        from_hf(missing)

    reshaped = _model()
    reshaped.model.layers[0].self_attn.q_norm.weight = nn.Parameter(torch.ones(8))  # per head
    with pytest.raises(ConversionError) as err:
        from_hf(reshaped)
    assert str(err.value) == (
        "weights: OLMo 2 checkpoint: blocks.0.attn.q_norm.weight has shape (8,), "
        "the model expects (32,)"
    )
