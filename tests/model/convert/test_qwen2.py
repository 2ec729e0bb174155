"""Qwen2 / Qwen2.5 through the converter registry: exact (q/k/v biases, sliding windows, RoPE
scaling), and refused where not exact."""

from __future__ import annotations

import pytest
import torch

from sinklab.model import build_model
from sinklab.model.convert import ConversionError, from_hf
from sinklab.model.convert.exact import TheirWeights, load_exact
from sinklab.model.convert.qwen2 import QWEN2
from sinklab.model.position import RopeScaling

from .equivalence import assert_same_attention, assert_same_logits, random_ids, randomize

transformers = pytest.importorskip("transformers")

WINDOW = 4
LENGTH = 12  # longer than the window, so the window changes what a query sees


def _qwen2_config(**overrides):
    values = dict(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-6,
        tie_word_embeddings=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1000.0},
        attn_implementation="eager",
    )
    values.update(overrides)
    return transformers.Qwen2Config(**values)


def _qwen2(**overrides):
    return randomize(transformers.Qwen2ForCausalLM(_qwen2_config(**overrides)))


@pytest.mark.parametrize(
    "overrides,window,layer_types",
    [
        ({}, None, None),
        ({"tie_word_embeddings": True, "num_key_value_heads": 4}, None, None),
        ({"head_dim": 16}, None, None),  # 4 x 16 = 64 != hidden_size 32
        (  # Qwen2's own rule: layers from max_window_layers on slide
            {"use_sliding_window": True, "sliding_window": WINDOW, "max_window_layers": 1},
            WINDOW,
            ["full", "sliding", "sliding"],
        ),
        (
            {
                "use_sliding_window": True,
                "sliding_window": 3,
                "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
            },
            3,
            ["sliding", "full", "sliding"],
        ),
    ],
)
def test_qwen2_logits_and_attention_equal_transformers(
    overrides: dict, window: int | None, layer_types: list[str] | None
) -> None:
    hf = _qwen2(**overrides)
    ours = from_hf(hf)
    assert ours.cfg.qkv_bias and not ours.cfg.bias
    assert (ours.cfg.sliding_window, ours.cfg.layer_types) == (window, layer_types)
    assert ours.cfg.tie_embeddings == hf.config.tie_word_embeddings
    ids = random_ids(64, length=LENGTH)
    assert_same_logits(hf, ours, ids)
    assert_same_attention(hf, ours, ids)


def test_a_sliding_layer_sees_only_its_window() -> None:
    """The window is really applied (not only matched): key 0 is out of a sliding layer's
    reach from the last query, in reach of a full layer's."""
    hf = _qwen2(use_sliding_window=True, sliding_window=WINDOW, max_window_layers=1)
    probe = from_hf(hf).forward_probe(random_ids(64, length=LENGTH), names=["attn.pattern"])
    last = LENGTH - 1
    assert (probe.layer(0, "attn.pattern")[:, :, last, 0] > 0).all()
    sliding = probe.layer(1, "attn.pattern")[:, :, last]
    assert (sliding[..., : last - WINDOW + 1] == 0).all()
    assert (sliding[..., last - WINDOW + 1 :] > 0).all()


@pytest.mark.parametrize("kind", ["linear", "dynamic"])
def test_qwen2_rope_scaling_equals_transformers(kind: str) -> None:
    """Past max_position_embeddings (8) dynamic scaling raises the base; linear divides the
    frequencies at every length."""
    rope = {"rope_type": kind, "factor": 2.0, "rope_theta": 1000.0}
    hf = _qwen2(max_position_embeddings=8, rope_parameters=rope)
    ours = from_hf(hf)
    assert ours.cfg.rope_scaling == RopeScaling(type=kind, factor=2.0)
    assert ours.cfg.max_seq_len == 8
    ids = random_ids(64, length=LENGTH)
    assert_same_logits(hf, ours, ids)
    assert_same_attention(hf, ours, ids)


def _tampered(cfg, **attrs):
    for name, value in attrs.items():
        setattr(cfg, name, value)
    return cfg


@pytest.mark.parametrize(
    "config,message",
    [
        (
            _qwen2_config(hidden_act="gelu"),
            "hidden_act: only silu (SwiGLU) converts, got 'gelu'",
        ),
        (
            _qwen2_config(
                rope_parameters={
                    "rope_type": "yarn",
                    "factor": 2.0,
                    "rope_theta": 1000.0,
                    "original_max_position_embeddings": 32,
                }
            ),
            "rope_scaling: rope_type 'yarn' has no exact sinklab form "
            "(default, linear and dynamic convert)",
        ),
        (
            _qwen2_config(
                rope_parameters={
                    "rope_type": "linear",
                    "factor": 2.0,
                    "rope_theta": 1000.0,
                    "partial_rotary_factor": 0.5,
                }
            ),
            "rope_scaling: partial_rotary_factor=0.5 is not supported for this family",
        ),
        (
            _qwen2_config(is_causal=False),
            "is_causal: False (bidirectional attention) does not convert; only causal decoders",
        ),
        (
            _qwen2_config(layer_types=["sliding_attention", "full_attention", "full_attention"]),
            "sliding_window: layer_types has sliding_attention layers but sliding_window is "
            "None (use_sliding_window=False); set both or neither",
        ),
        (
            _tampered(
                _qwen2_config(),
                layer_types=["chunked_attention", "full_attention", "full_attention"],
            ),
            "layer_types: unknown layer types ['chunked_attention']; full_attention and "
            "sliding_attention convert",
        ),
        (
            _tampered(_qwen2_config(), layer_types=["full_attention"] * 2),
            "layer_types: has 2 entries for num_hidden_layers=3",
        ),
    ],
)
def test_qwen2_options_without_an_exact_form_are_refused(config, message: str) -> None:
    with pytest.raises(ConversionError) as caught:
        QWEN2.config(config)
    assert str(caught.value) == message


def test_an_extra_tensor_of_theirs_is_refused_by_name() -> None:
    hf = _qwen2()
    state = dict(hf.state_dict())
    state["model.layers.2.self_attn.o_proj.bias"] = torch.zeros(32)  # a bias we would drop
    theirs = TheirWeights(state, "tampered")
    cfg = QWEN2.config(hf.config)
    ours = QWEN2.weights(cfg, theirs)
    with pytest.raises(ConversionError) as caught:
        load_exact(build_model(cfg), ours, theirs)
    assert str(caught.value) == (
        "weights: tampered: tensors with no place in the model: "
        "model.layers.2.self_attn.o_proj.bias"
    )


def test_a_missing_tensor_is_refused_by_name() -> None:
    hf = _qwen2()
    state = dict(hf.state_dict())
    del state["model.layers.1.self_attn.k_proj.bias"]
    with pytest.raises(ConversionError) as caught:
        QWEN2.weights(QWEN2.config(hf.config), TheirWeights(state, "tampered"))
    assert str(caught.value) == (
        "weights: tampered has no tensor 'model.layers.1.self_attn.k_proj.bias'"
    )


def test_a_hub_style_config_reads_as_expected() -> None:
    """A config.json in the hub's (pre-v5) form, shaped like Qwen2.5-0.5B: top-level
    rope_theta, use_sliding_window false beside a stale sliding_window, tied head."""
    hub = {
        "model_type": "qwen2",
        "hidden_act": "silu",
        "hidden_size": 896,
        "intermediate_size": 4864,
        "max_position_embeddings": 32768,
        "max_window_layers": 21,
        "num_attention_heads": 14,
        "num_hidden_layers": 24,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06,
        "rope_theta": 1000000.0,
        "sliding_window": 32768,
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "vocab_size": 151936,
    }
    cfg = QWEN2.config(transformers.AutoConfig.for_model(**hub))
    expected = dict(
        vocab_size=151936, d_model=896, n_layers=24, n_heads=14, n_kv_heads=2, head_dim=64,
        d_ff=4864, max_seq_len=32768, rope_theta=1e6, rope_scaling=None, norm_eps=1e-6,
        qkv_bias=True, bias=False, sliding_window=None, layer_types=None, tie_embeddings=True,
    )  # fmt: skip
    assert {key: getattr(cfg, key) for key in expected} == expected

    windowed = QWEN2.config(
        transformers.AutoConfig.for_model(**{**hub, "use_sliding_window": True})
    )
    assert windowed.sliding_window == 32768
    assert windowed.layer_types == ["full"] * 21 + ["sliding"] * 3
