"""Invalid configs fail with a one-line ConfigError naming the key; presets list every key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from sinklab.configs import compose_section
from sinklab.errors import ConfigError
from sinklab.model import ModelConfig, Transformer, num_params

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
# Keys of ModelConfig that base.yaml may leave out (none: every key is listed with its default).
OFF_BASE: set[str] = set()


@pytest.mark.parametrize(
    "overrides,key",
    [
        (dict(n_heads=8, n_kv_heads=3), "model.n_kv_heads"),
        (dict(d_model=12, n_heads=4, pos="rope"), "model.head_dim"),  # head_dim 3 is odd
        (dict(d_model=32, n_heads=4, head_dim=0), "model.head_dim"),
        (dict(d_model=30, n_heads=4), "model.n_heads"),  # 4 does not divide 30
        (dict(pos="xpos"), "model.pos"),
        (dict(attention="linear"), "model.attention"),
        (dict(gate="per_token"), "model.gate"),
        (dict(mlp="moe"), "model.mlp"),
        (dict(norm_position="peri"), "model.norm_position"),
        (dict(norm_position="post", parallel_block=True), "model.parallel_block"),
        (dict(norm="layernorm", norm_offset=1.0), "model.norm_offset"),
        (dict(qk_norm_scope="layer"), "model.qk_norm_scope"),
        (dict(gelu_approx="sigmoid"), "model.gelu_approx"),
        (dict(attn_softcap=0.0), "model.attn_softcap"),
        (dict(attn_softcap=30.0, attention="sigmoid"), "model.attn_softcap"),
        (dict(logit_softcap=-1.0), "model.logit_softcap"),
        (dict(attn_scale=0.0), "model.attn_scale"),
        (dict(sliding_window=0), "model.sliding_window"),
        (dict(sliding_window=4, causal=False), "model.sliding_window"),
        (dict(n_layers=2, layer_types=["full"]), "model.layer_types"),
        (dict(n_layers=2, layer_types=["full", "local"]), "model.layer_types"),
        (dict(n_layers=2, layer_types=["full", "sliding"]), "model.layer_types"),  # no window
        (dict(pos="alibi", rope_local_theta=1e4), "model.rope_local_theta"),
        (dict(n_sink_tokens=-1), "model.n_sink_tokens"),
        (dict(dropout=1.0), "model.dropout"),
    ],
)
def test_invalid_config_names_the_key(overrides: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        ModelConfig(**overrides)
    assert err.value.key == key
    assert str(err.value).startswith(key) and "\n" not in str(err.value)


def test_unknown_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="model.n_layer"):
        ModelConfig.from_dict({"n_layer": 3})


@pytest.mark.parametrize(
    "values,message",
    [
        ({"d_model": "wide"}, "model.d_model: must be an integer, got 'wide'"),
        ({"qk_norm": 1}, "model.qk_norm: must be true or false, got 1"),
        ({"rope_theta": "1e4"}, "model.rope_theta: must be a number, got '1e4'"),
        ({"pos": "spiral"}, "model.pos: 'spiral' is not allowed; choose one of: rope, alibi"),
    ],
)
def test_wrong_types_are_config_errors(values: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        ModelConfig.from_dict(values)
    assert str(err.value).startswith(message)


def test_choice_tuples_follow_the_literal_types() -> None:
    """Code that loops over the choices (tests, the bench) sees exactly the typed values."""
    from typing import get_args, get_type_hints

    from sinklab.model.config import ATTENTIONS, POSITIONS

    hints = get_type_hints(ModelConfig)
    assert get_args(hints["pos"]) == POSITIONS and get_args(hints["attention"]) == ATTENTIONS
    assert ModelConfig.from_dict({"rope_theta": 500}).rope_theta == 500.0  # ints are numbers


def test_base_lists_every_key_and_the_presets_inherit_it() -> None:
    base = yaml.safe_load((CONF / "base.yaml").read_text())
    assert set(base) == {f.name for f in dataclasses.fields(ModelConfig)} - OFF_BASE
    for path in sorted(CONF.glob("*.yaml")):
        if path.stem != "base":
            raw = yaml.safe_load(path.read_text())
            assert raw.pop("defaults") == ["base", "_self_"], path.name
            assert all(base[k] != v for k, v in raw.items()), f"{path.name} repeats base.yaml"


@pytest.mark.parametrize("preset", ["base", "tiny", "gu60m"])
def test_presets_list_every_key_and_build(preset: str) -> None:
    values = compose_section("model", preset)
    assert set(values) == {f.name for f in dataclasses.fields(ModelConfig)} - OFF_BASE
    assert values["vocab_size"] is None  # filled from the tokenizer by the trainer
    cfg = ModelConfig.from_dict({**values, "vocab_size": 32000})
    with torch.device("meta"):
        model = Transformer(cfg)
    if preset in ("base", "tiny"):
        assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.max_seq_len) == (128, 4, 8, 256)
        assert cfg.tie_embeddings and cfg.pos == "rope" and cfg.mlp == "swiglu"
    else:
        assert (cfg.d_model, cfg.n_layers, cfg.n_heads, cfg.d_ff, cfg.max_seq_len) == (
            768,
            10,
            8,
            1536,
            2048,
        )
        # Gu et al.'s "60M": the blocks alone hold 10 * (4 * 768^2 + 3 * 768 * 1536 + 2 * 768)
        blocks = num_params(model) - num_params(model.tok_emb) - num_params(model.lm_head) - 768
        assert blocks == 10 * (4 * 768**2 + 3 * 768 * 1536 + 2 * 768)


def test_keys_off_base_yaml_are_set_with_a_plus_and_keep_their_default() -> None:
    values = compose_section("model", "tiny", ["model.rotary_pct=0.25"])
    assert ModelConfig.from_dict({**values, "vocab_size": 32}).rotary_pct == 0.25
    values = compose_section("model", "tiny", ["model.rope_scaling={type: dynamic, factor: 2}"])
    scaling = ModelConfig.from_dict({**values, "vocab_size": 32}).rope_scaling
    assert (scaling.type, scaling.factor) == ("dynamic", 2.0)
    for key in OFF_BASE:
        assert key not in compose_section("model", "tiny")
        default = next(f.default for f in dataclasses.fields(ModelConfig) if f.name == key)
        assert getattr(ModelConfig(), key) == default
