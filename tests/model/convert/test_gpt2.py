"""GPT-2 converts exactly: logits and attention probabilities of random tiny `GPT2LMHeadModel`s
(Conv1D weights transposed, fused q|k|v split, learned positions, tanh GELU, tied and untied
heads, unscaled scores), old checkpoints' mask buffers skipped with a reason, and every option
sinklab cannot express refused by key."""

from __future__ import annotations

import pytest
import torch

from sinklab.model import build_model
from sinklab.model.convert import from_hf
from sinklab.model.convert.exact import ConversionError, TheirWeights, load_exact
from sinklab.model.convert.gpt2 import GPT2, config_from_gpt2

from .equivalence import assert_same_attention, assert_same_logits, random_ids, randomize

transformers = pytest.importorskip("transformers")

VOCAB, N_POSITIONS = 64, 24


def _config(**overrides) -> transformers.GPT2Config:
    values = dict(
        vocab_size=VOCAB,
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_positions=N_POSITIONS,
        layer_norm_epsilon=1e-6,
        initializer_range=0.05,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation="eager",
    )
    values.update(overrides)
    return transformers.GPT2Config(**values)


def _model(**overrides) -> transformers.GPT2LMHeadModel:
    return randomize(transformers.GPT2LMHeadModel(_config(**overrides)), seed=0)


CASES = {
    "tied-gelu_new": {},
    "untied": {"tie_word_embeddings": False},
    "reorder_and_upcast": {"reorder_and_upcast_attn": True},
    "n_inner-relu": {"n_inner": 40, "activation_function": "relu"},
    "erf-gelu": {"activation_function": "gelu"},
    "unscaled-scores": {"scale_attn_weights": False},
}


@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_logits_and_attention_match_transformers(overrides: dict) -> None:
    hf = _model(**overrides)
    ours = from_hf(hf)
    ids = random_ids(VOCAB, length=N_POSITIONS)  # every row of wpe
    assert_same_logits(hf, ours, ids, atol=1e-4)
    assert_same_attention(hf, ours, ids, atol=1e-5)


def test_the_config_reads_every_size_from_theirs() -> None:
    cfg = config_from_gpt2(_config())
    assert (cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_heads) == (VOCAB, 32, 2, 4)
    assert cfg.d_ff == 4 * 32  # n_inner None: GPT-2's 4 x n_embd
    assert (cfg.max_seq_len, cfg.norm_eps, cfg.init_std) == (N_POSITIONS, 1e-6, 0.05)
    assert (cfg.pos, cfg.norm, cfg.norm_position, cfg.bias) == ("learned", "layernorm", "pre", True)
    assert (cfg.mlp, cfg.gelu_approx, cfg.tie_embeddings) == ("gelu", "tanh", True)
    assert (cfg.attn_scale, cfg.dropout) == (None, 0.0)
    assert config_from_gpt2(_config(n_inner=40)).d_ff == 40
    assert config_from_gpt2(_config(activation_function="gelu")).gelu_approx == "none"
    assert config_from_gpt2(_config(scale_attn_weights=False)).attn_scale == 1.0


def test_the_tanh_gelu_is_not_the_erf_one() -> None:
    """The tanh case above would fail with erf GELU: the two differ by more than the tolerance
    on these weights, so `gelu_approx` is what makes gelu_new exact."""
    hf = _model()
    cfg = config_from_gpt2(hf.config)
    cfg.gelu_approx = "none"
    theirs = TheirWeights(hf.state_dict(), "gpt2")
    wrong = load_exact(build_model(cfg), GPT2.weights(cfg, theirs), theirs).eval()
    ids = random_ids(VOCAB, length=N_POSITIONS)
    with torch.no_grad():
        assert (wrong(ids) - hf(ids).logits).abs().max() > 1e-3


def test_an_old_checkpoints_mask_buffers_are_skipped_with_a_reason() -> None:
    """Checkpoints saved by older transformers carry attn.bias (the causal mask) and
    attn.masked_bias; they are not weights and are skipped by name, with the reason kept."""
    hf = _model()
    state = dict(hf.state_dict())
    state["transformer.h.1.attn.bias"] = torch.tril(torch.ones(N_POSITIONS, N_POSITIONS))[
        None, None
    ]
    state["transformer.h.1.attn.masked_bias"] = torch.tensor(-1e4)
    theirs = TheirWeights(state, "old")
    cfg = GPT2.config(hf.config)
    ours = load_exact(build_model(cfg), GPT2.weights(cfg, theirs), theirs).eval()
    assert theirs.skipped == {
        "transformer.h.1.attn.bias": "causal-mask buffer, not a weight",
        "transformer.h.1.attn.masked_bias": "causal-mask buffer, not a weight",
    }
    assert_same_logits(hf, ours, random_ids(VOCAB, length=N_POSITIONS))


REFUSALS = {
    "per-layer-scale": (
        {"scale_attn_by_inverse_layer_idx": True},
        "scale_attn_by_inverse_layer_idx: True divides layer i's scores by i + 1; "
        "sinklab scales every layer alike",
    ),
    "cross-attention": (
        {"add_cross_attention": True},
        "add_cross_attention: True adds cross-attention blocks; sinklab's model is decoder-only",
    ),
    "activation": (
        {"activation_function": "quick_gelu"},
        "activation_function: activation 'quick_gelu' has no exact sinklab MLP; supported: "
        "gelu, gelu_python, gelu_new, gelu_fast, gelu_pytorch_tanh, gelu_python_tanh, relu",
    ),
}


@pytest.mark.parametrize("overrides,message", REFUSALS.values(), ids=REFUSALS.keys())
def test_options_sinklab_cannot_express_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ConversionError) as refused:
        config_from_gpt2(_config(**overrides))
    assert str(refused.value) == message


def test_an_extra_tensor_of_theirs_is_refused_by_name() -> None:
    hf = _model()
    state = dict(hf.state_dict())
    state["transformer.h.0.attn.q_attn.weight"] = torch.zeros(32, 32)  # a cross-attention part
    theirs = TheirWeights(state, "tampered")
    cfg = GPT2.config(hf.config)
    ours = GPT2.weights(cfg, theirs)
    with pytest.raises(ConversionError) as refused:
        load_exact(build_model(cfg), ours, theirs)
    assert str(refused.value) == (
        "weights: tampered: tensors with no place in the model: transformer.h.0.attn.q_attn.weight"
    )


@pytest.mark.parametrize("name", ["transformer.h.1.attn.c_attn.bias", "transformer.wpe.weight"])
def test_a_missing_tensor_is_refused_by_name(name: str) -> None:
    hf = _model()
    state = dict(hf.state_dict())
    del state[name]
    with pytest.raises(ConversionError) as refused:
        GPT2.weights(GPT2.config(hf.config), TheirWeights(state, "tampered"))
    assert str(refused.value) == f"weights: tampered has no tensor '{name}'"


def test_a_fused_qkv_of_the_wrong_width_is_refused() -> None:
    hf = _model()
    state = dict(hf.state_dict())
    state["transformer.h.0.attn.c_attn.weight"] = torch.zeros(32, 128)
    with pytest.raises(ConversionError) as refused:
        GPT2.weights(GPT2.config(hf.config), TheirWeights(state, "tampered"))
    assert str(refused.value) == (
        "weights: tampered: transformer.h.0.attn.c_attn has shapes (32, 128) / (96,), "
        "expected (32, 96) / (96,)"
    )
