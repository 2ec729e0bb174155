"""RoPE variants against transformers' own implementations (configs built here, nothing
downloaded), within 1e-6: partial rotary (`model.rotary_pct`) against GPT-NeoX's rotary
embedding, scaled RoPE (`model.rope_scaling`, linear and dynamic) against Llama's."""

from __future__ import annotations

import pytest
import torch
from transformers import GPTNeoXConfig, LlamaConfig
from transformers.models.gpt_neox import modeling_gpt_neox as neox
from transformers.models.llama import modeling_llama as llama

from sinklab.errors import ConfigError
from sinklab.model import ModelConfig, build_model

from .helpers import tiny

ATOL = 1e-6


def _neox_config(
    pct: float, head_dim: int = 16, heads: int = 2, scaling: dict | None = None
) -> GPTNeoXConfig:
    return GPTNeoXConfig(
        hidden_size=head_dim * heads,
        num_attention_heads=heads,
        num_hidden_layers=1,
        intermediate_size=8,
        vocab_size=16,
        max_position_embeddings=64,
        rotary_pct=pct,
        rotary_emb_base=10000,
        rope_scaling=dict(scaling) if scaling else None,
    )


def _ours(pct: float, head_dim: int = 16, heads: int = 2) -> ModelConfig:
    return ModelConfig(
        vocab_size=16, d_model=head_dim * heads, n_heads=heads, n_layers=1, rotary_pct=pct
    )


@pytest.mark.parametrize("pct", [0.25, 0.5, 1.0])
def test_partial_rotary_matches_gpt_neox(pct: float) -> None:
    """cos/sin, the rotated q and k, and the attention scores of GPT-NeoX (Pythia's rotary:
    rotate-half within the first int(head_dim x rotary_pct) dims, the rest passed through)."""
    L, H, hd = 12, 2, 16
    theirs = neox.GPTNeoXRotaryEmbedding(_neox_config(pct))
    q, k = torch.randn(2, H, L, hd), torch.randn(2, H, L, hd)  # transformers' [N, H, L, hd]
    cos, sin = theirs(q, torch.arange(L)[None])
    q_theirs, k_theirs = neox.apply_rotary_pos_emb(q, k, cos, sin)

    position = _ours(pct).position
    shared = position.positions(L, torch.device("cpu"))
    assert shared.rope is not None and shared.rope[0].shape == (L, int(hd * pct))
    torch.testing.assert_close(shared.rope[0], cos[0], rtol=0, atol=ATOL)
    torch.testing.assert_close(shared.rope[1], sin[0], rtol=0, atol=ATOL)
    q_ours = shared.rotate(q.transpose(1, 2)).transpose(1, 2)  # ours: [N, L, H, hd]
    k_ours = shared.rotate(k.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(q_ours, q_theirs, rtol=0, atol=ATOL)
    torch.testing.assert_close(k_ours, k_theirs, rtol=0, atol=ATOL)
    torch.testing.assert_close(
        q_ours @ k_ours.transpose(-1, -2), q_theirs @ k_theirs.transpose(-1, -2), rtol=0, atol=1e-5
    )
    if pct < 1:  # the dims past the rotary part are untouched
        assert torch.equal(q_ours[..., int(hd * pct) :], q[..., int(hd * pct) :])


def test_partial_rotary_scores_still_depend_on_distance_only() -> None:
    """A quarter-rotary model keeps RoPE's relativity (the pass-through dims add a
    position-free term), and differs from the full-rotary one."""
    cfg = tiny(rotary_pct=0.5, n_heads=2, n_kv_heads=2)  # head_dim 8: 4 dims turn
    shared = cfg.position.positions(10, torch.device("cpu"))
    q, k = torch.randn(8), torch.randn(8)
    q_rot = shared.rotate(q.expand(1, 10, 1, 8))[0, :, 0]
    k_rot = shared.rotate(k.expand(1, 10, 1, 8))[0, :, 0]
    scores = q_rot @ k_rot.T
    torch.testing.assert_close(scores[3:, 3:], scores[:-3, :-3])
    ids = torch.randint(0, 32, (1, 10))
    torch.manual_seed(0)
    half = build_model(cfg).eval()
    torch.manual_seed(0)
    full = build_model(tiny(n_heads=2, n_kv_heads=2)).eval()
    with torch.no_grad():
        assert not torch.allclose(half(ids), full(ids))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(rotary_pct=0.0), "model.rotary_pct: must be in (0, 1], got 0.0"),
        (dict(rotary_pct=1.5), "model.rotary_pct: must be in (0, 1], got 1.5"),
        (
            dict(rotary_pct=0.3),  # head_dim 4 (d_model 16, 4 heads): int(1.2) = 1 dim
            "model.rotary_pct: rotates int(4 x 0.3) = 1 dims of each head; the rotary dim",
        ),
        (
            dict(pos="alibi", rotary_pct=0.25),
            "model.rotary_pct: only pos=rope rotates; got 0.25 with pos=alibi",
        ),
    ],
)
def test_rotary_pct_is_validated(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        tiny(**overrides)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="model.rotary_pct: must be a number"):
        ModelConfig.from_dict({"rotary_pct": "quarter"})


# -- scaled RoPE (model.rope_scaling) against transformers' Llama rotary ----------------------

MAX = 32  # max_seq_len / max_position_embeddings of the scaling tests


def _llama(scaling: dict) -> llama.LlamaRotaryEmbedding:
    """A fresh rotary module (transformers' dynamic scaling keeps state between calls)."""
    cfg = LlamaConfig(
        hidden_size=64,
        num_attention_heads=4,
        num_key_value_heads=4,
        num_hidden_layers=1,
        intermediate_size=8,
        vocab_size=16,
        max_position_embeddings=MAX,
        rope_theta=10000.0,
        rope_scaling=dict(scaling),
    )
    assert cfg.rope_parameters["rope_type"] == scaling["type"]
    return llama.LlamaRotaryEmbedding(cfg)


@pytest.mark.parametrize(
    "scaling",
    [
        {"type": "linear", "factor": 2.0},
        {"type": "linear", "factor": 4.0},
        {"type": "dynamic", "factor": 2.0},
        {"type": "dynamic", "factor": 4.0},
    ],
)
@pytest.mark.parametrize("length", [16, MAX, 48, 100])
def test_rope_scaling_matches_llama(scaling: dict, length: int) -> None:
    """cos/sin and the rotated q and k of transformers' LlamaRotaryEmbedding with the same
    rope_scaling, for forwards inside and past max_seq_len (where dynamic starts to act)."""
    H, hd = 4, 16
    q, k = torch.randn(2, H, length, hd), torch.randn(2, H, length, hd)
    cos, sin = _llama(scaling)(q, torch.arange(length)[None])
    q_theirs, k_theirs = llama.apply_rotary_pos_emb(q, k, cos, sin)

    cfg = ModelConfig(
        vocab_size=16, d_model=64, n_heads=H, n_layers=1, max_seq_len=MAX, rope_scaling=scaling
    )
    shared = cfg.position.positions(length, torch.device("cpu"))
    assert shared.rope is not None
    torch.testing.assert_close(shared.rope[0], cos[0], rtol=0, atol=ATOL)
    torch.testing.assert_close(shared.rope[1], sin[0], rtol=0, atol=ATOL)
    q_ours = shared.rotate(q.transpose(1, 2)).transpose(1, 2)
    k_ours = shared.rotate(k.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(q_ours, q_theirs, rtol=0, atol=ATOL)
    torch.testing.assert_close(k_ours, k_theirs, rtol=0, atol=ATOL)


def test_scaling_acts_as_documented() -> None:
    """linear F: position p turns like p / F; dynamic: plain RoPE up to max_seq_len positions,
    a larger base past it."""

    def tables(**scaling) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = tiny(max_seq_len=8, rope_scaling=scaling or None)
        return cfg.position.positions(20, torch.device("cpu")).rope

    plain, linear = tables(), tables(type="linear", factor=4.0)
    torch.testing.assert_close(linear[0][8], plain[0][2])  # position 8 / 4 = 2
    dynamic = torch.cat([tables(type="dynamic", factor=2.0)[0]])
    cfg = tiny(max_seq_len=8, rope_scaling={"type": "dynamic", "factor": 2.0})
    inside = cfg.position.positions(8, torch.device("cpu")).rope
    assert torch.equal(inside[0], plain[0][:8])  # 8 positions: not scaled
    assert not torch.allclose(dynamic[:8], plain[0][:8])  # 20 positions: the base grew


@pytest.mark.parametrize(
    "scaling,message",
    [
        (
            {"type": "yarn", "factor": 2.0},
            "model.rope_scaling.type: 'yarn' is not allowed; choose one of: linear, dynamic",
        ),
        ({"type": "linear", "factor": 0.5}, "model.rope_scaling.factor: must be >= 1"),
        ({"type": "linear"}, "model.rope_scaling.factor: required; it has no default"),
        (
            {"type": "linear", "factor": 2.0, "rope_type": "linear"},
            "model.rope_scaling.rope_type: unknown key; did you mean model.rope_scaling.type? known keys: factor, type",
        ),
        (
            {"type": "linear", "factor": "two"},
            "model.rope_scaling.factor: must be a number, got 'two'",
        ),
    ],
)
def test_rope_scaling_is_validated(scaling: dict, message: str) -> None:
    for build in (
        lambda: ModelConfig.from_dict({"rope_scaling": scaling}),
        lambda: tiny(rope_scaling=scaling),
    ):
        with pytest.raises(ConfigError) as err:
            build()
        assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_rope_scaling_is_rope_only_and_round_trips() -> None:
    with pytest.raises(ConfigError, match="model.rope_scaling: only pos=rope rotates"):
        tiny(pos="learned", rope_scaling={"type": "linear", "factor": 2.0})
    with pytest.raises(ConfigError, match="model.rope_scaling: dynamic scaling .* d > 2"):
        tiny(n_heads=8, n_kv_heads=8, rope_scaling={"type": "dynamic", "factor": 2.0})  # hd 2
    cfg = tiny(rope_scaling={"type": "dynamic", "factor": 3})
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["rope_scaling"] == {"type": "dynamic", "factor": 3.0}


@pytest.mark.parametrize("kind", ["linear", "dynamic"])
def test_partial_and_scaled_rotary_together_match_gpt_neox(kind: str) -> None:
    """Both options at once (a Pythia-shaped head with scaling): GPT-NeoX's rotary scales the
    frequencies of its rotary dims only, and so do we."""
    scaling = {"type": kind, "factor": 2.0}
    theirs = _neox_config(0.25, scaling=scaling)
    assert theirs.rope_parameters["rope_type"] == kind
    assert theirs.rope_parameters["partial_rotary_factor"] == 0.25
    ours = ModelConfig(
        vocab_size=16,
        d_model=32,
        n_heads=2,
        n_layers=1,
        max_seq_len=64,
        rotary_pct=0.25,
        rope_scaling=scaling,
    )
    for length in (40, 100):  # inside and past max_position_embeddings 64
        cos, sin = neox.GPTNeoXRotaryEmbedding(theirs)(torch.zeros(1), torch.arange(length)[None])
        shared = ours.position.positions(length, torch.device("cpu"))
        assert shared.rope is not None and shared.rope[0].shape == (length, 4)
        torch.testing.assert_close(shared.rope[0], cos[0], rtol=0, atol=ATOL)
        torch.testing.assert_close(shared.rope[1], sin[0], rtol=0, atol=ATOL)
