"""OPT converts exactly: logits and attention probabilities of random tiny `OPTForCausalLM`s
(tied and untied heads, LayerNorms with and without parameters, biases on and off), the
position table's offset of two, and every option sinklab cannot express refused by key."""

from __future__ import annotations

import pytest
import torch

from sinklab.model import build_model
from sinklab.model.convert import from_hf
from sinklab.model.convert.exact import ConversionError, TheirWeights, load_exact
from sinklab.model.convert.opt import OPT, POSITION_OFFSET, config_from_opt

from .equivalence import assert_same_attention, assert_same_logits, random_ids, randomize

transformers = pytest.importorskip("transformers")

VOCAB, MAX_POS = 64, 24


def _config(**overrides) -> transformers.OPTConfig:
    values = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        ffn_dim=48,
        max_position_embeddings=MAX_POS,
        init_std=0.05,
        pad_token_id=1,
        bos_token_id=2,
        eos_token_id=2,
        attn_implementation="eager",
    )
    values.update(overrides)
    return transformers.OPTConfig(**values)


def _model(**overrides) -> transformers.OPTForCausalLM:
    return randomize(transformers.OPTForCausalLM(_config(**overrides)), seed=0)


CASES = {
    "tied-relu": {},
    "untied": {"tie_word_embeddings": False},
    "norms-without-parameters": {"layer_norm_elementwise_affine": False},
    "no-parameters-no-bias": {"layer_norm_elementwise_affine": False, "enable_bias": False},
    "gelu": {"activation_function": "gelu"},
}


@pytest.mark.parametrize("overrides", CASES.values(), ids=CASES.keys())
def test_logits_and_attention_match_transformers(overrides: dict) -> None:
    hf = _model(**overrides)
    ours = from_hf(hf)
    ids = random_ids(VOCAB, length=MAX_POS)  # every position of the table
    assert_same_logits(hf, ours, ids, atol=1e-4)
    assert_same_attention(hf, ours, ids, atol=1e-5)


def test_the_config_reads_every_size_from_theirs() -> None:
    cfg = config_from_opt(_config(tie_word_embeddings=False))
    assert (cfg.vocab_size, cfg.d_model, cfg.n_layers, cfg.n_heads) == (VOCAB, 32, 2, 4)
    assert (cfg.d_ff, cfg.max_seq_len, cfg.init_std) == (48, MAX_POS, 0.05)
    assert (cfg.pos, cfg.norm, cfg.norm_position, cfg.mlp) == (
        "learned",
        "layernorm",
        "pre",
        "relu",
    )
    assert (cfg.bias, cfg.tie_embeddings, cfg.norm_eps, cfg.dropout) == (True, False, 1e-5, 0.0)


def test_position_p_is_their_row_p_plus_two_and_rows_zero_one_never_matter() -> None:
    """Their table has max_position_embeddings + 2 rows; ours is rows 2: (row p = position p).
    Rows 0 and 1 serve only padded positions, so changing them leaves unpadded logits as they
    were: dropping them loses nothing."""
    hf = _model()
    table = hf.model.decoder.embed_positions.weight
    assert table.shape[0] == MAX_POS + POSITION_OFFSET
    ours = from_hf(hf)
    torch.testing.assert_close(ours.pos_emb.weight, table[POSITION_OFFSET:], rtol=0, atol=0)
    ids = random_ids(VOCAB, length=MAX_POS)
    # not a constant shift: the LayerNorms would remove that from any row
    noise = torch.randn(POSITION_OFFSET + 1, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = hf(ids).logits
        table[:POSITION_OFFSET] += noise[:POSITION_OFFSET]
        after = hf(ids).logits
        table[POSITION_OFFSET] += noise[POSITION_OFFSET]  # the row of position 0 does matter
        moved = hf(ids).logits
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert (moved - before).abs().max() > 1e-2


REFUSALS = {
    "post-layernorm": (
        {"do_layer_norm_before": False},
        "do_layer_norm_before: False (post-LayerNorm, as OPT-350m) has no final norm; "
        "sinklab's post-norm model has one",
    ),
    "projected-embedding": (
        {"word_embed_proj_dim": 16},
        "word_embed_proj_dim: 16 != hidden_size 32 needs project_in/project_out, which sinklab lacks",
    ),
    "no-final-norm": (
        {"_remove_final_layer_norm": True},
        "_remove_final_layer_norm: True drops the final LayerNorm; sinklab always has one",
    ),
    "norm-biases-without-linear-biases": (
        {"enable_bias": False},
        "enable_bias: False with layer_norm_elementwise_affine=True keeps LayerNorm biases, "
        "which sinklab's bias=false drops",
    ),
    "activation": (
        {"activation_function": "silu"},
        "activation_function: activation 'silu' has no exact sinklab MLP; supported: gelu, "
        "gelu_python, gelu_new, gelu_fast, gelu_pytorch_tanh, gelu_python_tanh, relu",
    ),
}


@pytest.mark.parametrize("overrides,message", REFUSALS.values(), ids=REFUSALS.keys())
def test_options_sinklab_cannot_express_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ConversionError) as refused:
        config_from_opt(_config(**overrides))
    assert str(refused.value) == message


def test_an_extra_tensor_of_theirs_is_refused_by_name() -> None:
    hf = _model()
    state = dict(hf.state_dict())
    state["model.decoder.layers.1.self_attn.k_norm.weight"] = torch.ones(8)
    theirs = TheirWeights(state, "tampered")
    cfg = OPT.config(hf.config)
    ours = OPT.weights(cfg, theirs)
    with pytest.raises(ConversionError) as refused:
        load_exact(build_model(cfg), ours, theirs)
    assert str(refused.value) == (
        "weights: tampered: tensors with no place in the model: "
        "model.decoder.layers.1.self_attn.k_norm.weight"
    )


@pytest.mark.parametrize(
    "name",
    ["model.decoder.layers.0.fc1.bias", "model.decoder.layers.1.final_layer_norm.weight"],
)
def test_a_missing_tensor_is_refused_by_name(name: str) -> None:
    """A missing LayerNorm gain is refused, not replaced by the parameter-free norm's ones."""
    hf = _model()
    state = dict(hf.state_dict())
    del state[name]
    with pytest.raises(ConversionError) as refused:
        OPT.weights(OPT.config(hf.config), TheirWeights(state, "tampered"))
    assert str(refused.value) == f"weights: tampered has no tensor '{name}'"


def test_a_position_table_of_the_wrong_length_is_refused() -> None:
    hf = _model()
    state = dict(hf.state_dict())
    state["model.decoder.embed_positions.weight"] = state["model.decoder.embed_positions.weight"][
        2:
    ]
    with pytest.raises(ConversionError) as refused:
        OPT.weights(OPT.config(hf.config), TheirWeights(state, "tampered"))
    assert str(refused.value) == (
        "max_position_embeddings: tampered: the position table has 24 rows, expected "
        "max_position_embeddings + 2 = 26"
    )
