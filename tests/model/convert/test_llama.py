"""Llama through the converter registry: exact, and refused where not exact."""

from __future__ import annotations

import pytest
import torch

from sinklab.model.convert import ConversionError, from_hf, load_hf, supported
from sinklab.model.convert.exact import TheirWeights, load_exact
from sinklab.model.convert.llama import LLAMA

from .equivalence import assert_same_attention, assert_same_logits, random_ids, randomize

transformers = pytest.importorskip("transformers")


def _llama(**overrides):
    values = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        attn_implementation="eager",
    )
    values.update(overrides)
    return randomize(transformers.LlamaForCausalLM(transformers.LlamaConfig(**values)))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"tie_word_embeddings": True},
        {"head_dim": 16},
        {"attention_bias": True, "mlp_bias": True},
    ],
)
def test_llama_logits_and_attention_equal_transformers(overrides: dict) -> None:
    hf = _llama(**overrides)
    ours = from_hf(hf)
    ids = random_ids(64)
    assert_same_logits(hf, ours, ids)
    assert_same_attention(hf, ours, ids)


def test_an_unknown_architecture_is_refused_naming_the_supported_ones() -> None:
    cfg = transformers.BertConfig(
        vocab_size=10,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=8,
    )
    model = transformers.BertForMaskedLM(cfg)
    with pytest.raises(
        ConversionError, match=r"architecture 'bert' does not convert exactly.*llama"
    ):
        from_hf(model)
    assert "llama" in supported()


def test_an_extra_tensor_of_theirs_is_refused_by_name() -> None:
    hf = _llama()
    state = dict(hf.state_dict())
    state["model.layers.0.self_attn.q_proj.bias"] = torch.zeros(32)  # a bias we would drop
    theirs = TheirWeights(state, "tampered")
    cfg = LLAMA.config(hf.config)
    ours = LLAMA.weights(cfg, theirs)
    from sinklab.model import build_model

    with pytest.raises(
        ConversionError, match=r"no place in the model: model\.layers\.0\.self_attn\.q_proj\.bias"
    ):
        load_exact(build_model(cfg), ours, theirs)


def test_a_missing_tensor_is_refused_by_name() -> None:
    hf = _llama()
    state = dict(hf.state_dict())
    del state["model.layers.1.mlp.up_proj.weight"]
    with pytest.raises(
        ConversionError, match=r"has no tensor 'model\.layers\.1\.mlp\.up_proj\.weight'"
    ):
        LLAMA.weights(LLAMA.config(hf.config), TheirWeights(state, "tampered"))


def test_a_differing_tied_head_is_refused() -> None:
    hf = _llama(tie_word_embeddings=True)
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    state["lm_head.weight"] = state["lm_head.weight"] + 1.0
    with pytest.raises(ConversionError, match="differs from the embedding"):
        LLAMA.weights(LLAMA.config(hf.config), TheirWeights(state, "tampered"))


def test_a_config_without_a_size_is_refused() -> None:
    import types

    from sinklab.model.convert.exact import read
    from sinklab.model.convert.llama import config_from_llama

    full = _llama().config.to_dict()
    del full["intermediate_size"]
    partial = types.SimpleNamespace(**full)
    with pytest.raises(ConversionError, match="the llama config has no 'intermediate_size'"):
        config_from_llama(partial)
    assert read(partial, "hidden_size") == 32


def test_load_hf_reads_a_folder_and_refuses_remote_code(tmp_path) -> None:
    import json

    hf = _llama()
    hf.save_pretrained(tmp_path / "llama")
    _save_tokenizer(tmp_path / "llama")
    model, tokenizer = load_hf(tmp_path / "llama")
    ids = random_ids(64)
    assert_same_logits(hf, model, ids)
    assert tokenizer("a b").input_ids

    config = json.loads((tmp_path / "llama" / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.Model"}
    (tmp_path / "llama" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConversionError, match="never runs remote code"):
        load_hf(tmp_path / "llama")


def _save_tokenizer(folder) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {f"w{i}": i for i in range(63)} | {"[UNK]": 63}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(
        folder
    )
