"""Qwen3 through the converter registry: exact (per-head q/k RMSNorm before RoPE, head_dim
apart from hidden_size / heads, sliding windows), and refused where not exact."""

from __future__ import annotations

import pytest
import torch

from sinklab.model import build_model
from sinklab.model.convert import ConversionError, from_hf
from sinklab.model.convert.exact import TheirWeights, load_exact
from sinklab.model.convert.qwen3 import QWEN3

from .equivalence import assert_same_attention, assert_same_logits, random_ids, randomize

transformers = pytest.importorskip("transformers")

LENGTH = 12


def _qwen3_config(**overrides):
    values = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,  # 4 x 16 = 64 != hidden_size 32, as in Qwen3-0.6B (16 x 128 over 1024)
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
        attn_implementation="eager",
    )
    values.update(overrides)
    return transformers.Qwen3Config(**values)


def _qwen3(**overrides):
    return randomize(transformers.Qwen3ForCausalLM(_qwen3_config(**overrides)))


@pytest.mark.parametrize(
    "overrides,window,layer_types",
    [
        ({}, None, None),
        ({"tie_word_embeddings": False, "head_dim": 8, "num_key_value_heads": 1}, None, None),
        (
            {"use_sliding_window": True, "sliding_window": 4, "max_window_layers": 2},
            4,
            ["full", "full", "sliding"],
        ),
        (
            {"rope_parameters": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1000.0}},
            None,
            None,
        ),
    ],
)
def test_qwen3_logits_and_attention_equal_transformers(
    overrides: dict, window: int | None, layer_types: list[str] | None
) -> None:
    hf = _qwen3(**overrides)
    ours = from_hf(hf)
    cfg = ours.cfg
    assert cfg.qk_norm and cfg.qk_norm_scope == "head" and not (cfg.bias or cfg.qkv_bias)
    assert cfg.head_dim == hf.config.head_dim and cfg.d_model == 32
    assert (cfg.sliding_window, cfg.layer_types) == (window, layer_types)
    ids = random_ids(64, length=LENGTH)
    assert_same_logits(hf, ours, ids)
    assert_same_attention(hf, ours, ids)


def test_the_head_norms_are_the_checkpoints() -> None:
    """q_norm / k_norm gains land on attn.q_norm / attn.k_norm ([head_dim], one per layer)."""
    hf = _qwen3()
    ours = from_hf(hf)
    for i in range(3):
        theirs = hf.model.layers[i].self_attn
        assert torch.equal(ours.blocks[i].attn.q_norm.weight, theirs.q_norm.weight)
        assert torch.equal(ours.blocks[i].attn.k_norm.weight, theirs.k_norm.weight)
        assert ours.blocks[i].attn.q_norm.weight.shape == (16,)


@pytest.mark.parametrize(
    "config,message",
    [
        (
            _qwen3_config(attention_bias=True),
            "attention_bias: True biases o_proj too; sinklab has an output bias only with "
            "model.bias, which also adds MLP biases Qwen3 lacks",
        ),
        (
            _qwen3_config(hidden_act="relu"),
            "hidden_act: only silu (SwiGLU) converts, got 'relu'",
        ),
        (
            _qwen3_config(
                rope_parameters={
                    "rope_type": "llama3",
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 16,
                    "rope_theta": 1000.0,
                }
            ),
            "rope_scaling: rope_type 'llama3' has no exact sinklab form "
            "(default, linear and dynamic convert)",
        ),
        (
            _qwen3_config(layer_types=["full_attention", "sliding_attention", "full_attention"]),
            "sliding_window: layer_types has sliding_attention layers but sliding_window is "
            "None (use_sliding_window=False); set both or neither",
        ),
    ],
)
def test_qwen3_options_without_an_exact_form_are_refused(config, message: str) -> None:
    with pytest.raises(ConversionError) as caught:
        QWEN3.config(config)
    assert str(caught.value) == message


def test_an_extra_tensor_of_theirs_is_refused_by_name() -> None:
    hf = _qwen3()
    state = dict(hf.state_dict())
    state["model.layers.0.self_attn.v_proj.bias"] = torch.zeros(32)
    theirs = TheirWeights(state, "tampered")
    cfg = QWEN3.config(hf.config)
    ours = QWEN3.weights(cfg, theirs)
    with pytest.raises(ConversionError) as caught:
        load_exact(build_model(cfg), ours, theirs)
    assert str(caught.value) == (
        "weights: tampered: tensors with no place in the model: "
        "model.layers.0.self_attn.v_proj.bias"
    )


def test_a_missing_tensor_is_refused_by_name() -> None:
    hf = _qwen3()
    state = dict(hf.state_dict())
    del state["model.layers.2.self_attn.k_norm.weight"]
    with pytest.raises(ConversionError) as caught:
        QWEN3.weights(QWEN3.config(hf.config), TheirWeights(state, "tampered"))
    assert str(caught.value) == (
        "weights: tampered has no tensor 'model.layers.2.self_attn.k_norm.weight'"
    )


def test_a_hub_style_config_reads_as_expected() -> None:
    """A config.json shaped like Qwen3-0.6B's: 16 heads of 128 over hidden_size 1024."""
    hub = {
        "model_type": "qwen3",
        "attention_bias": False,
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": 1024,
        "intermediate_size": 3072,
        "max_position_embeddings": 40960,
        "max_window_layers": 28,
        "num_attention_heads": 16,
        "num_hidden_layers": 28,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000,
        "sliding_window": None,
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "vocab_size": 151936,
    }
    cfg = QWEN3.config(transformers.AutoConfig.for_model(**hub))
    expected = dict(
        d_model=1024, n_heads=16, n_kv_heads=8, head_dim=128, n_layers=28, d_ff=3072,
        max_seq_len=40960, rope_theta=1e6, qk_norm=True, qk_norm_scope="head", bias=False,
        qkv_bias=False, sliding_window=None, layer_types=None, tie_embeddings=True,
    )  # fmt: skip
    assert {key: getattr(cfg, key) for key in expected} == expected
