"""Mistral through the converter registry: exact (sliding window on every layer, explicit
head_dim), and refused where not exact."""

from __future__ import annotations

import pytest
import torch

from sinklab.errors import ConfigError
from sinklab.model import build_model
from sinklab.model.convert import ConversionError, from_hf
from sinklab.model.convert.exact import TheirWeights, load_exact
from sinklab.model.convert.mistral import MISTRAL

from .equivalence import assert_same_attention, assert_same_logits, random_ids, randomize

transformers = pytest.importorskip("transformers")

WINDOW = 4
LENGTH = 12  # longer than the window, so the window changes what a query sees


def _mistral_config(**overrides):
    values = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        sliding_window=WINDOW,
        rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
        attn_implementation="eager",
    )
    values.update(overrides)
    return transformers.MistralConfig(**values)


def _mistral(**overrides):
    return randomize(transformers.MistralForCausalLM(_mistral_config(**overrides)))


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"sliding_window": None},
        {"head_dim": 16, "tie_word_embeddings": True},  # 4 x 16 = 64 != hidden_size 32
        {
            "rope_parameters": {"rope_type": "dynamic", "factor": 2.0, "rope_theta": 1000.0},
            "max_position_embeddings": 8,
        },
    ],
)
def test_mistral_logits_and_attention_equal_transformers(overrides: dict) -> None:
    hf = _mistral(**overrides)
    ours = from_hf(hf)
    cfg = ours.cfg
    assert cfg.sliding_window == hf.config.sliding_window and cfg.layer_types is None
    assert cfg.head_dim == hf.config.head_dim and not (cfg.bias or cfg.qkv_bias or cfg.qk_norm)
    ids = random_ids(64, length=LENGTH)
    assert_same_logits(hf, ours, ids)
    assert_same_attention(hf, ours, ids)


def test_every_layer_slides() -> None:
    """From the last query, keys before the window get exactly zero in every layer."""
    hf = _mistral()
    probe = from_hf(hf).forward_probe(random_ids(64, length=LENGTH), names=["attn.pattern"])
    last = LENGTH - 1
    for i in range(2):
        row = probe.layer(i, "attn.pattern")[:, :, last]
        assert (row[..., : last - WINDOW + 1] == 0).all()
        assert (row[..., last - WINDOW + 1 :] > 0).all()


def test_layer_types_are_ignored_as_transformers_does() -> None:
    """MistralModel builds one sliding mask for all layers whatever `layer_types` says (it
    warns and points at Ministral), so the conversion slides every layer too."""
    hf = _mistral(layer_types=["full_attention", "sliding_attention"])
    ours = from_hf(hf)
    assert ours.cfg.layer_types is None and ours.cfg.is_sliding(0) and ours.cfg.is_sliding(1)
    ids = random_ids(64, length=LENGTH)
    assert_same_logits(hf, ours, ids)
    assert_same_attention(hf, ours, ids)


@pytest.mark.parametrize(
    "config,message",
    [
        (
            _mistral_config(hidden_act="gelu_pytorch_tanh"),
            "hidden_act: only silu (SwiGLU) converts, got 'gelu_pytorch_tanh'",
        ),
        (
            _mistral_config(
                rope_parameters={
                    "rope_type": "yarn",
                    "factor": 4.0,
                    "rope_theta": 1000.0,
                    "original_max_position_embeddings": 16,
                }
            ),
            "rope_scaling: rope_type 'yarn' has no exact sinklab form "
            "(default, linear and dynamic convert)",
        ),
        (
            _mistral_config(is_causal=False),
            "is_causal: False (bidirectional attention) does not convert; only causal decoders",
        ),
        (
            _mistral_config(sliding_window=0),
            "model.sliding_window: must be positive or null, got 0",
        ),
    ],
)
def test_mistral_options_without_an_exact_form_are_refused(config, message: str) -> None:
    with pytest.raises(ConfigError) as caught:  # ConversionError, or ModelConfig's own check
        MISTRAL.config(config)
    assert str(caught.value) == message


def test_an_extra_tensor_of_theirs_is_refused_by_name() -> None:
    hf = _mistral()
    state = dict(hf.state_dict())
    state["model.layers.1.mlp.down_proj.bias"] = torch.zeros(32)
    theirs = TheirWeights(state, "tampered")
    cfg = MISTRAL.config(hf.config)
    ours = MISTRAL.weights(cfg, theirs)
    with pytest.raises(ConversionError) as caught:
        load_exact(build_model(cfg), ours, theirs)
    assert str(caught.value) == (
        "weights: tampered: tensors with no place in the model: model.layers.1.mlp.down_proj.bias"
    )


def test_a_missing_tensor_is_refused_by_name() -> None:
    hf = _mistral()
    state = dict(hf.state_dict())
    del state["model.norm.weight"]
    with pytest.raises(ConversionError) as caught:
        MISTRAL.weights(MISTRAL.config(hf.config), TheirWeights(state, "tampered"))
    assert str(caught.value) == "weights: tampered has no tensor 'model.norm.weight'"


@pytest.mark.parametrize(
    "version,extra,window,theta",
    [
        ("v0.1", {"sliding_window": 4096, "rope_theta": 10000.0, "vocab_size": 32000}, 4096, 1e4),
        ("v0.3", {"sliding_window": None, "rope_theta": 1000000.0, "vocab_size": 32768}, None, 1e6),
    ],
)
def test_a_hub_style_config_reads_as_expected(
    version: str, extra: dict, window: int | None, theta: float
) -> None:
    """config.json files shaped like Mistral-7B v0.1 (4096-token window) and v0.3 (none)."""
    hub = {
        "model_type": "mistral",
        "hidden_act": "silu",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "max_position_embeddings": 32768,
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05,
        "tie_word_embeddings": False,
        **extra,
    }
    cfg = MISTRAL.config(transformers.AutoConfig.for_model(**hub))
    expected = dict(
        d_model=4096, n_heads=32, n_kv_heads=8, head_dim=128, n_layers=32, d_ff=14336,
        sliding_window=window, layer_types=None, rope_theta=theta, vocab_size=extra["vocab_size"],
        tie_embeddings=False, bias=False, qkv_bias=False,
    )  # fmt: skip
    assert {key: getattr(cfg, key) for key in expected} == expected, version
