"""Gemma 3 (text) converts exactly: logits and attention probabilities of random tiny
`Gemma3ForCausalLM`s, with sequences longer than the sliding window and both layer types, and
every option sinklab cannot express refused with its key."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from sinklab.model.convert import from_hf
from sinklab.model.convert.exact import ConversionError
from sinklab.model.convert.gemma3 import config_from_gemma3

from .equivalence import assert_same_attention, assert_same_logits, randomize

transformers = pytest.importorskip("transformers")

WINDOW = 5
SEQ = 14  # > WINDOW, so the window cuts keys from the sliding layers' rows


def _config(**overrides) -> transformers.Gemma3TextConfig:
    values = dict(
        vocab_size=80,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=12,  # heads x head_dim = 48 != hidden_size
        max_position_embeddings=64,
        sliding_window=WINDOW,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={
            "sliding_attention": {"rope_type": "default", "rope_theta": 50.0},
            "full_attention": {"rope_type": "default", "rope_theta": 5000.0},
        },
        query_pre_attn_scalar=20,  # not head_dim, so the score scale matters
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        attn_implementation="eager",
    )
    values.update(overrides)
    return transformers.Gemma3TextConfig(**values)


def _model(**overrides) -> transformers.Gemma3ForCausalLM:
    return randomize(transformers.Gemma3ForCausalLM(_config(**overrides)).eval(), seed=0)


def _ids() -> torch.Tensor:
    return torch.randint(0, 80, (2, SEQ), generator=torch.Generator().manual_seed(1))


CASES = {
    "tied-gqa-tanh": dict(),
    "untied-mqa-erf": dict(
        tie_word_embeddings=False, num_key_value_heads=1, hidden_activation="gelu"
    ),
    "logit-softcap": dict(final_logit_softcapping=3.0),
}


@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_logits_and_attention_match_transformers(overrides: dict) -> None:
    hf = _model(**overrides)
    ours = from_hf(hf).eval()
    ids = _ids()
    assert_same_logits(hf, ours, ids, atol=1e-4)
    assert_same_attention(hf, ours, ids, atol=1e-5)


def test_the_config_carries_every_gemma_feature() -> None:
    hf = _config(final_logit_softcapping=3.0)
    cfg = config_from_gemma3(hf)
    assert cfg.layer_types == ["sliding", "full", "sliding"]
    assert cfg.sliding_window == WINDOW
    assert (cfg.rope_theta, cfg.rope_local_theta) == (5000.0, 50.0)
    assert cfg.attn_scale == 20**-0.5
    assert (cfg.attn_softcap, cfg.logit_softcap) == (None, 3.0)
    assert (cfg.norm_position, cfg.norm_offset, cfg.qk_norm_scope) == ("sandwich", 1.0, "head")
    assert (cfg.mlp, cfg.gelu_approx, cfg.scale_embeddings) == ("geglu", "tanh", True)
    assert (cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == (32, 4, 2, 12)


def test_gemma3_270m_config_json_reads_as_published() -> None:
    """The hub config.json of google/gemma-3-270m (pre-v5 keys: rope_theta and
    rope_local_base_freq at the top level), read through transformers as from_pretrained does."""
    layer_types = ["full_attention" if (i + 1) % 6 == 0 else "sliding_attention" for i in range(18)]
    hub = dict(
        vocab_size=262144,
        hidden_size=640,
        intermediate_size=2048,
        num_hidden_layers=18,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=256,
        hidden_activation="gelu_pytorch_tanh",
        max_position_embeddings=32768,
        query_pre_attn_scalar=256,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        rope_local_base_freq=10000.0,
        rope_scaling=None,
        sliding_window=512,
        layer_types=layer_types,
        attn_logit_softcapping=None,
        final_logit_softcapping=None,
        tie_word_embeddings=True,
    )
    cfg = config_from_gemma3(transformers.Gemma3TextConfig(**hub))
    assert [i for i, t in enumerate(cfg.layer_types) if t == "full"] == [5, 11, 17]
    assert (cfg.rope_theta, cfg.rope_local_theta, cfg.sliding_window) == (1e6, 1e4, 512)
    assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads) == (640, 18, 4, 1)
    assert (cfg.head_dim, cfg.d_ff, cfg.vocab_size, cfg.attn_scale) == (256, 2048, 262144, 1 / 16)
    assert (cfg.tie_embeddings, cfg.logit_softcap, cfg.max_seq_len) == (True, None, 32768)


def test_both_layer_types_shape_the_attention() -> None:
    """The equivalence above covers the window: transformers' sliding layers give keys beyond
    it zero weight while its full layer gives them weight, and ours agree with both."""
    hf = _model()
    with torch.no_grad():
        probs = hf(_ids(), output_attentions=True).attentions
    t = torch.arange(SEQ)
    beyond = (t[:, None] - t[None, :]) >= WINDOW
    assert probs[0][..., beyond].abs().max() == 0 and probs[2][..., beyond].abs().max() == 0
    assert probs[1][..., beyond].min() > 0


def test_the_multimodal_config_is_refused() -> None:
    multimodal = transformers.Gemma3Config(text_config=_config().to_dict())
    with pytest.raises(ConversionError) as err:
        from_hf(transformers.Gemma3ForConditionalGeneration(multimodal))
    assert str(err.value) == (
        "model_type: 'gemma3' is Gemma 3's multimodal model (Gemma3ForConditionalGeneration, "
        "vision tower + text); only the text model converts: load Gemma3ForCausalLM "
        "(model_type gemma3_text)"
    )


def test_a_text_config_under_the_multimodal_name_converts() -> None:
    """model_type gemma3 without a vision (or text) sub-config is the text model: it reads as
    gemma3_text does."""
    text = _config()
    values = {**text.to_dict(), "model_type": "gemma3"}
    assert config_from_gemma3(SimpleNamespace(**values)) == config_from_gemma3(text)


REFUSALS = {
    "bidirectional": (
        dict(use_bidirectional_attention=True),
        "use_bidirectional_attention: True does not convert: sinklab's windows are causal "
        "(EmbeddingGemma is an encoder)",
    ),
    "not causal": (
        dict(is_causal=False),
        "is_causal: False (bidirectional attention) does not convert; only causal decoders",
    ),
    "activation": (
        dict(hidden_activation="silu"),
        "hidden_activation: 'silu' does not convert; only gelu_pytorch_tanh and gelu do",
    ),
    "attention_bias": (
        dict(attention_bias=True),
        "attention_bias: True biases o_proj too; sinklab has an output bias only with "
        "model.bias, which also adds MLP biases Gemma 3 lacks",
    ),
    "chunked": (
        dict(layer_types=["sliding_attention", "chunked_attention", "full_attention"]),
        "layer_types: unknown layer types ['chunked_attention']; full_attention and "
        "sliding_attention convert",
    ),
    "global rope scaling": (
        dict(
            rope_parameters={
                "sliding_attention": {"rope_type": "default", "rope_theta": 10.0},
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
            }
        ),
        "rope_parameters.full_attention.rope_type: 'linear' does not convert: sinklab scales "
        "RoPE on every layer or none, not per layer type; only plain RoPE converts",
    ),
    "no window": (
        dict(sliding_window=None),
        "sliding_window: is None while layer_types has sliding_attention layers; set it",
    ),
    "attention softcap": (
        dict(attn_logit_softcapping=2.0),
        "attn_logit_softcapping: set, but transformers' Gemma3Attention never applies it "
        "(Gemma 3 dropped the attention softcap), so the scores it means are ambiguous; set it "
        "to None",
    ),
    "softcap": (
        dict(final_logit_softcapping=0.0),
        "final_logit_softcapping: must be positive or None, got 0.0",
    ),
}


@pytest.mark.parametrize("overrides,message", REFUSALS.values(), ids=REFUSALS.keys())
def test_options_sinklab_cannot_express_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ConversionError) as err:
        config_from_gemma3(_config(**overrides))
    assert str(err.value) == message


def test_transformers_ignores_the_attention_softcap_it_is_given() -> None:
    """Why attn_logit_softcapping is refused rather than converted: transformers' output does
    not depend on it, so neither value would be the checkpoint's meaning for certain."""
    plain = _model()
    capped = transformers.Gemma3ForCausalLM(_config(attn_logit_softcapping=0.5)).eval()
    capped.load_state_dict(plain.state_dict())
    with torch.no_grad():
        assert torch.equal(plain(_ids()).logits, capped(_ids()).logits)


def test_a_missing_config_key_is_refused_by_name() -> None:
    values = _config().to_dict()
    del values["query_pre_attn_scalar"]
    with pytest.raises(ConversionError) as err:
        config_from_gemma3(SimpleNamespace(**values))
    assert str(err.value) == (
        "query_pre_attn_scalar: the gemma3_text config has no 'query_pre_attn_scalar'; "
        "cannot read its size"
    )


def test_a_tampered_state_dict_is_refused_naming_the_tensor() -> None:
    extra = _model()
    extra.model.register_buffer("stray", torch.zeros(3))  # persistent: in the state dict
    with pytest.raises(ConversionError, match=re.escape("model.stray")):
        from_hf(extra)

    missing = _model()
    missing.model.layers[1].self_attn.k_norm = nn.Identity()
    with pytest.raises(ConversionError, match=re.escape("model.layers.1.self_attn.k_norm.weight")):
        from_hf(missing)

    reshaped = _model()
    reshaped.model.layers[0].pre_feedforward_layernorm.weight = nn.Parameter(torch.zeros(31))
    with pytest.raises(ConversionError) as err:
        from_hf(reshaped)
    assert str(err.value) == (
        "weights: Gemma 3 (text) checkpoint: blocks.0.norm_mlp.weight has shape (31,), "
        "the model expects (32,)"
    )
