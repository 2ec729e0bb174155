"""Clipped softmax (Bondarenko et al. 2023) against weights computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from sinklab.errors import ConfigError
from sinklab.model import build_model
from sinklab.model.attention import Attention

from .helpers import tiny

INF = float("inf")


def _attention(**kw) -> Attention:
    return Attention(tiny(attention="clipped_softmax", **kw))


def test_hand_built_logits_clip_at_zero_and_at_one() -> None:
    # max_seq_len 4, alpha 1: gamma = -1/4; zeta 1.5, so the stretch factor is zeta - gamma = 7/4
    attn = _attention(max_seq_len=4, clip_alpha=1.0, clip_zeta=1.5)
    scores = torch.tensor(
        [
            [0.0, -INF, -INF],  # softmax [1, 0, 0]: 7/4 - 1/4 = 1.5 -> clipped to 1
            [0.0, 0.0, -INF],  # softmax [1/2, 1/2]: 7/8 - 1/4 = 0.625 each
            [math.log(6), math.log(3), 0.0],  # softmax [0.6, 0.3, 0.1]
        ]
    )[None, None]
    expected = torch.tensor(
        [
            [1.0, 0.0, 0.0],
            [0.625, 0.625, 0.0],
            # 7/4 * 0.6 - 1/4 = 0.8; 7/4 * 0.3 - 1/4 = 0.275; 7/4 * 0.1 - 1/4 = -0.075 -> 0
            [0.8, 0.275, 0.0],
        ]
    )[None, None]
    torch.testing.assert_close(attn.weights(scores), expected)


def test_no_stretch_is_plain_softmax() -> None:
    attn = _attention(clip_alpha=0.0, clip_zeta=1.0)
    scores = torch.randn(2, 4, 5, 5).masked_fill(torch.ones(5, 5).triu(1).bool(), -INF)
    torch.testing.assert_close(attn.weights(scores), torch.softmax(scores, -1))


def test_probe_pattern_follows_the_formula_and_is_not_normalised() -> None:
    cfg = tiny(attention="clipped_softmax", clip_alpha=2.0, clip_zeta=1.1)
    ids = torch.randint(0, cfg.vocab_size, (2, 10), generator=torch.Generator().manual_seed(0))
    probe = build_model(cfg).forward_probe(ids)
    q, k = probe.layer(1, "attn.q"), probe.layer(1, "attn.k")
    k = k.repeat_interleave(cfg.n_heads // cfg.n_kv_heads, dim=1)
    s = (q @ k.transpose(-2, -1) / cfg.head_dim**0.5).masked_fill(
        torch.ones(10, 10).triu(1).bool(), -INF
    )
    gamma = -2.0 / cfg.max_seq_len
    expected = ((1.1 - gamma) * torch.softmax(s, -1) + gamma).clamp(0, 1)
    torch.testing.assert_close(probe.layer(1, "attn.pattern"), expected, rtol=1e-5, atol=1e-6)
    assert not probe.normalised  # the sink metrics use the proxy scores for it


@pytest.mark.parametrize(
    "key,value", [("clip_alpha", -0.5), ("clip_zeta", 0.9)], ids=["alpha<0", "zeta<1"]
)
def test_bad_stretch_is_a_config_error(key: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"model.{key}"):
        tiny(attention="clipped_softmax", **{key: value})
