"""GPT-NeoX (Pythia) converts exactly: logits and attention probabilities of random tiny
`GPTNeoXForCausalLM`s (per-head fused q/k/v, partial rotary, parallel and sequential residual,
linear and dynamic RoPE scaling), and every option sinklab cannot express refused by key."""

from __future__ import annotations

import pytest
import torch

from sinklab.model import build_model
from sinklab.model.convert import from_hf
from sinklab.model.convert.exact import ConversionError, TheirWeights, load_exact
from sinklab.model.convert.gpt_neox import GPT_NEOX, config_from_gpt_neox

from .equivalence import assert_same_attention, assert_same_logits, random_ids, randomize

transformers = pytest.importorskip("transformers")

VOCAB, MAX_POS = 64, 16


def _config(**overrides) -> transformers.GPTNeoXConfig:
    values = dict(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,  # head_dim 16: rotary_pct 0.25 turns 4 dims
        intermediate_size=96,
        max_position_embeddings=MAX_POS,
        rotary_pct=0.25,
        rotary_emb_base=500,
        layer_norm_eps=1e-6,
        initializer_range=0.05,
        attn_implementation="eager",
    )
    values.update(overrides)
    return transformers.GPTNeoXConfig(**values)


def _model(**overrides) -> transformers.GPTNeoXForCausalLM:
    return randomize(transformers.GPTNeoXForCausalLM(_config(**overrides)), seed=0)


CASES = {
    "pythia-parallel": {},
    "sequential": {"use_parallel_residual": False},
    "full-rotary-tied": {"rotary_pct": 1.0, "tie_word_embeddings": True},
    "linear-scaling": {
        "rope_scaling": {"rope_type": "linear", "factor": 2.0},
        "rotary_pct": 0.5,
    },
    "gelu_new": {"hidden_act": "gelu_new"},
}


@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_logits_and_attention_match_transformers(overrides: dict) -> None:
    hf = _model(**overrides)
    ours = from_hf(hf)
    ids = random_ids(VOCAB, length=MAX_POS)
    assert_same_logits(hf, ours, ids, atol=1e-4)
    assert_same_attention(hf, ours, ids, atol=1e-5)


def test_dynamic_scaling_matches_past_max_position_embeddings() -> None:
    """Dynamic NTK RoPE only changes the base past max_position_embeddings: compare there."""
    hf = _model(rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    ours = from_hf(hf)
    assert ours.cfg.rope_scaling is not None and ours.cfg.rope_scaling.type == "dynamic"
    ids = random_ids(VOCAB, length=MAX_POS + 8)
    assert_same_logits(hf, ours, ids, atol=1e-4)
    assert_same_attention(hf, ours, ids, atol=1e-5)


def test_the_config_reads_every_size_from_theirs() -> None:
    cfg = config_from_gpt_neox(_config())
    assert (cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.head_dim) == (
        VOCAB,
        64,
        2,
        4,
        16,
    )
    assert (cfg.d_ff, cfg.max_seq_len, cfg.norm_eps, cfg.init_std) == (96, MAX_POS, 1e-6, 0.05)
    assert (cfg.pos, cfg.rope_theta, cfg.rotary_pct, cfg.rope_scaling) == (
        "rope",
        500.0,
        0.25,
        None,
    )
    assert (cfg.norm, cfg.norm_position, cfg.parallel_block, cfg.bias) == (
        "layernorm",
        "pre",
        True,
        True,
    )
    assert (cfg.mlp, cfg.gelu_approx, cfg.tie_embeddings, cfg.dropout) == (
        "gelu",
        "none",
        False,
        0.0,
    )
    assert config_from_gpt_neox(_config(use_parallel_residual=False)).parallel_block is False


def _converted_with(hf, **changes) -> torch.nn.Module:
    cfg = config_from_gpt_neox(hf.config)
    for key, value in changes.items():
        setattr(cfg, key, value)
    theirs = TheirWeights(hf.state_dict(), "pythia")
    return load_exact(build_model(cfg), GPT_NEOX.weights(cfg, theirs), theirs).eval()


@pytest.mark.parametrize(
    "changes", [{"rotary_pct": 1.0}, {"rope_theta": 10000.0}, {"parallel_block": False}]
)
def test_each_setting_read_from_their_config_matters(changes: dict) -> None:
    """The equivalence above is sensitive: the same weights under a wrong rotary share, base
    or residual form give logits far outside the tolerance."""
    hf = _model()
    ids = random_ids(VOCAB, length=MAX_POS)
    with torch.no_grad():
        assert (_converted_with(hf, **changes)(ids) - hf(ids).logits).abs().max() > 1e-3


def test_q_k_v_are_interleaved_per_head_not_thirds() -> None:
    """query_key_value's rows are [head, (q, k, v), head_dim]: head 1's query rows are rows
    3*hd .. 4*hd of theirs, which a split into thirds would read as part of head 3's query."""
    hf = _model()
    hd = 16
    fused = hf.gpt_neox.layers[0].attention.query_key_value.weight
    ours = from_hf(hf)
    wq, wk, wv = (getattr(ours.blocks[0].attn, n).weight for n in ("wq", "wk", "wv"))
    torch.testing.assert_close(wq[hd : 2 * hd], fused[3 * hd : 4 * hd], rtol=0, atol=0)
    torch.testing.assert_close(wk[hd : 2 * hd], fused[4 * hd : 5 * hd], rtol=0, atol=0)
    torch.testing.assert_close(wv[hd : 2 * hd], fused[5 * hd : 6 * hd], rtol=0, atol=0)


REFUSALS = {
    "attention-without-bias": (
        {"attention_bias": False},
        "attention_bias: False drops attention biases while GPT-NeoX's MLP and LayerNorms keep "
        "theirs; sinklab's bias covers every layer",
    ),
    "rope-type": (
        {"rope_scaling": {"rope_type": "yarn", "factor": 2.0}},
        "rope_parameters: rope_type 'yarn' has no sinklab equivalent; supported: default, "
        "linear, dynamic",
    ),
    "activation": (
        {"hidden_act": "silu"},
        "hidden_act: activation 'silu' has no exact sinklab MLP; supported: gelu, gelu_python, "
        "gelu_new, gelu_fast, gelu_pytorch_tanh, gelu_python_tanh, relu",
    ),
}


@pytest.mark.parametrize("overrides,message", REFUSALS.values(), ids=REFUSALS.keys())
def test_options_sinklab_cannot_express_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ConversionError) as refused:
        config_from_gpt_neox(_config(**overrides))
    assert str(refused.value) == message


def test_an_extra_tensor_of_theirs_is_refused_by_name() -> None:
    hf = _model()
    state = dict(hf.state_dict())
    state["gpt_neox.emb_norm.weight"] = torch.ones(64)
    theirs = TheirWeights(state, "tampered")
    cfg = GPT_NEOX.config(hf.config)
    ours = GPT_NEOX.weights(cfg, theirs)
    with pytest.raises(ConversionError) as refused:
        load_exact(build_model(cfg), ours, theirs)
    assert str(refused.value) == (
        "weights: tampered: tensors with no place in the model: gpt_neox.emb_norm.weight"
    )


@pytest.mark.parametrize(
    "name", ["gpt_neox.layers.1.attention.query_key_value.bias", "lm_head.weight"]
)
def test_a_missing_tensor_is_refused_by_name(name: str) -> None:
    hf = _model()
    state = dict(hf.state_dict())
    del state[name]
    with pytest.raises(ConversionError) as refused:
        GPT_NEOX.weights(GPT_NEOX.config(hf.config), TheirWeights(state, "tampered"))
    assert str(refused.value) == f"weights: tampered has no tensor '{name}'"


def test_old_checkpoints_buffers_are_skipped_with_a_reason() -> None:
    hf = _model()
    state = dict(hf.state_dict())
    state["gpt_neox.layers.0.attention.rotary_emb.inv_freq"] = torch.ones(2)
    state["gpt_neox.layers.0.attention.bias"] = torch.ones(1, 1, MAX_POS, MAX_POS, dtype=torch.bool)
    theirs = TheirWeights(state, "old")
    cfg = GPT_NEOX.config(hf.config)
    ours = load_exact(build_model(cfg), GPT_NEOX.weights(cfg, theirs), theirs).eval()
    assert sorted(theirs.skipped) == [
        "gpt_neox.layers.0.attention.bias",
        "gpt_neox.layers.0.attention.rotary_emb.inv_freq",
    ]
    assert_same_logits(hf, ours, random_ids(VOCAB, length=MAX_POS))
