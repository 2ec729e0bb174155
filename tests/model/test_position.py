"""Position encodings: ALiBi slopes, RoPE relativity, sinusoidal table."""

from __future__ import annotations

import math

import pytest
import torch

from sinklab.model import alibi_slopes
from sinklab.model.position import apply_rope, causal_bias, rope_cos_sin, sinusoidal_table


def test_alibi_slopes_eight_heads() -> None:
    # Press et al.: a power of two n gives 2^(-8/n * i), i = 1..n
    expected = torch.tensor([2.0 ** -(i + 1) for i in range(8)])
    torch.testing.assert_close(alibi_slopes(8), expected)


def test_alibi_slopes_six_heads() -> None:
    # closest power of two is 4: 2^-2, 2^-4, 2^-6, 2^-8; then every other slope of 8 heads
    # (2^-1, 2^-3, ...), the first 6 - 4 = 2 of them
    expected = torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8, 2.0**-1, 2.0**-3])
    torch.testing.assert_close(alibi_slopes(6), expected)


def test_alibi_four_heads_and_their_penalty_on_token_0_from_query_63() -> None:
    # Gu et al.'s 4-head setting: 1/4 .. 1/256; the penalty on key 0 seen from query 63 is
    # slope * 63 logits: only the steepest head (15.75) effectively blocks token 0
    slopes = alibi_slopes(4)
    assert slopes.tolist() == [1 / 4, 1 / 16, 1 / 64, 1 / 256]
    penalty = -causal_bias(64, slopes)[:, 63, 0]  # the additive bias the model uses
    assert penalty.tolist() == [15.75, 3.9375, 0.984375, 0.24609375]
    # and the 8-head set keeps the same shallowest slope 1/256 (it adds steeper ones between)
    assert alibi_slopes(8).min().item() == 1 / 256


@pytest.mark.parametrize("n", [1, 3, 5, 12, 16])
def test_alibi_slopes_any_head_count(n: int) -> None:
    slopes = alibi_slopes(n)
    assert slopes.shape == (n,) and len(set(slopes.tolist())) == n
    assert (slopes > 0).all() and (slopes < 1).all()


def test_rope_scores_depend_only_on_position_difference() -> None:
    hd, L = 8, 12
    cos, sin = rope_cos_sin(L, hd, theta=100.0)
    q, k = torch.randn(hd), torch.randn(hd)
    q_rot = apply_rope(q.expand(L, hd), cos, sin)  # the same vector at every position
    k_rot = apply_rope(k.expand(L, hd), cos, sin)
    scores = q_rot @ k_rot.T  # scores[m, n] for a query at m and a key at n
    for shift in range(1, 4):
        torch.testing.assert_close(scores[shift:, shift:], scores[:-shift, :-shift])
    # ...and they do depend on the difference
    assert (scores[5, 0] - scores[5, 4]).abs() > 1e-3
    # RoPE is a rotation: norms are kept
    torch.testing.assert_close(q_rot.norm(dim=-1), q.norm().expand(L))


def test_rope_first_position_is_identity() -> None:
    cos, sin = rope_cos_sin(4, 6, theta=10000.0)
    x = torch.randn(6)
    torch.testing.assert_close(apply_rope(x.expand(4, 6), cos, sin)[0], x)


def test_sinusoidal_table_values() -> None:
    table = sinusoidal_table(5, 4)
    pos = 3
    expected = [math.sin(pos), math.cos(pos), math.sin(pos / 100), math.cos(pos / 100)]
    torch.testing.assert_close(table[pos], torch.tensor(expected))


def test_sinusoidal_table_far_positions_use_base_10000() -> None:
    # at position 1000 a base of 10001 instead of 10000 moves channel 2 by 4e-4: visible here
    table = sinusoidal_table(1001, 4)
    expected = [math.sin(1000), math.cos(1000), math.sin(10.0), math.cos(10.0)]
    torch.testing.assert_close(table[1000], torch.tensor(expected), rtol=0, atol=2e-5)


def test_alibi_slopes_refuse_zero_heads_with_their_own_message() -> None:
    with pytest.raises(ValueError, match="n_heads must be positive, got 0"):
        alibi_slopes(0)
