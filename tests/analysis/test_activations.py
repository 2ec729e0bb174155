"""Massive-activation measurements on a residual stream with planted values, and the
spike anatomy on weights whose U_k is known."""

from __future__ import annotations

import math

import pytest
import torch

from sinklab.analysis import activations, measure
from tests.analysis.analysis_builders import probe_from_maps, uniform_causal


def planted(N: int = 3, T: int = 8, d: int = 6) -> torch.Tensor:
    h = torch.ones(N, T, d)
    h[:, 0, 4] = -2000.0  # the massive value: first token, channel 4 (sign must not matter)
    h[:, 3, 1] = 50.0
    h[:, 2, 2] = 20.0
    return h


def test_planted_massive_value_top_location_and_ratio_exact():
    out = activations.residual_extremes(planted())
    assert out["massive/top1"] == 2000.0
    assert (out["massive/top1_position"], out["massive/top1_channel"]) == (0.0, 4.0)
    assert out["massive/top1_location_share"] == 1.0
    assert out["massive/median"] == 1.0
    assert out["massive/top1_over_median"] == 2000.0
    assert (out["massive/top2"], out["massive/top2_position"], out["massive/top2_channel"]) == (
        50.0,
        3.0,
        1.0,
    )
    assert (out["massive/top3"], out["massive/top3_position"], out["massive/top3_channel"]) == (
        20.0,
        2.0,
        2.0,
    )
    assert out["massive/sun_count"] == 1.0  # 2000 passes |a|>100 and >=1000x median; 50 does not


def test_location_is_the_most_common_over_windows():
    h = planted(N=4)
    h[3, 0, 4] = 1.0
    h[3, 5, 0] = 3000.0  # one window's top sits elsewhere
    out = activations.residual_extremes(h)
    assert (out["massive/top1_position"], out["massive/top1_channel"]) == (0.0, 4.0)
    assert out["massive/top1_location_share"] == 0.75
    assert out["massive/top1"] == pytest.approx((3 * 2000.0 + 3000.0) / 4)


def test_norm_ratio_on_planted_stream_via_measure():
    h = planted()
    T, d = h.shape[1], h.shape[2]
    v = torch.ones(3, 2, T, 4)
    v[:, 1, 0] = 0.25  # head 1's first value is drained to a quarter
    probe = probe_from_maps(
        [uniform_causal(T)], cache={"blocks.0.resid_post": h, "blocks.0.attn.v": v}
    )
    df = measure(probe)
    rest = [math.sqrt(d)] * (T - 1)
    rest[2 - 1] = math.sqrt(d - 1 + 400)
    rest[3 - 1] = math.sqrt(d - 1 + 2500)
    expected = math.sqrt(d - 1 + 2000.0**2) / (sum(rest) / (T - 1))
    got = df[(df.metric == "massive/norm_ratio/resid") & (df.layer == 0)].value.item()
    assert got == pytest.approx(expected, rel=1e-6)
    ratio_v = (
        df[(df.metric == "massive/norm_ratio/value") & (df.layer == 0)].set_index("head").value
    )
    assert ratio_v[0] == pytest.approx(1.0)
    assert ratio_v[1] == pytest.approx(0.25)
    assert df[(df.metric == "massive/top1_over_median") & (df.layer == 0)].value.item() == 2000.0


def test_spike_matrix_of_a_single_planted_channel():
    d, d_ff = 4, 3
    w_gate, w_up, w_down = torch.zeros(d_ff, d), torch.zeros(d_ff, d), torch.zeros(d, d_ff)
    w_gate[0, 0] = 1.0
    w_up[0, 0] = 1.0
    w_down[2, 0] = 5.0  # U_2 = 5 e0 e0^T
    w_down[3, 0] = 1.0  # U_3 = e0 e0^T
    w_gate[1, 1], w_up[1, 3], w_down[1, 1] = 2.0, 1.0, 1.0  # U_1 = 2 e1 e3^T: not symmetric
    out = activations.spike_anatomy(w_gate, w_up, w_down, torch.tensor([2, 1]))
    assert out["spike/channel/rank_0"] == 2.0
    assert out["spike/u_fro/rank_0"] == pytest.approx(5.0)
    assert out["spike/top_eig/rank_0"] == pytest.approx(5.0)
    assert out["spike/eig_share/rank_0"] == pytest.approx(1.0)
    # S_1 = e1 e3^T + e3 e1^T has eigenvalues +1 and -1: no single dominant direction
    assert out["spike/u_fro/rank_1"] == pytest.approx(2.0)
    assert abs(out["spike/top_eig/rank_1"]) == pytest.approx(1.0)
    assert out["spike/eig_share/rank_1"] == pytest.approx(0.5)
    assert out["spike/eigvec_align"] == pytest.approx(0.0, abs=1e-9)  # e0 vs a mix of e1, e3
    assert out["spike/u_fro_median"] == pytest.approx(1.0)  # norms 0, 2, 5, 1: lower median 1


def test_all_channel_frobenius_matches_explicit_matrices():
    w_gate, w_up, w_down = torch.randn(10, 6), torch.randn(10, 6), torch.randn(6, 10)
    fast = activations.spike_fro_all(w_gate, w_up, w_down)
    slow = torch.stack([activations.spike_matrix(w_gate, w_up, w_down, k).norm() for k in range(6)])
    assert torch.allclose(fast, slow, rtol=1e-4)


def test_spike_matrix_predicts_the_glu_output_for_a_large_input():
    """Why the anatomy matters: for large pre-activations SiLU(x) ~ x, so out_k ~ h^T U_k h."""
    d, d_ff = 5, 7
    w_gate, w_up, w_down = torch.randn(d_ff, d), torch.randn(d_ff, d), torch.randn(d, d_ff)
    w_gate = w_gate.abs()
    h = torch.full((d,), 30.0)  # every gate pre-activation is large and positive
    out = w_down @ (torch.nn.functional.silu(w_gate @ h) * (w_up @ h))
    approx = torch.stack(
        [h @ activations.spike_matrix(w_gate, w_up, w_down, k) @ h for k in range(d)]
    )
    assert torch.allclose(out, approx, rtol=1e-4)


def at_the_thresholds() -> torch.Tensor:
    """Two windows of 20 values built on Sun et al.'s rule (|a| > 100, |a| >= 1000 x median),
    with medians that are exact in binary. Window 0, median 1/16 (1000 x median = 62.5):
    100 is not counted (not > 100), 100.5 is, 50 is not (fails both). Window 1, median 1:
    1000 is counted (>= 1000 x median, equality included), 999 is not."""
    h = torch.full((2, 4, 5), 1 / 16)
    h[0, 0, 0], h[0, 1, 1], h[0, 2, 2] = 100.0, -100.5, 50.0
    h[1] = 1.0
    h[1, 0, 3], h[1, 3, 4] = 1000.0, 999.0
    return h


def test_sun_rule_strict_on_abs_inclusive_on_rel_with_default_thresholds() -> None:
    out = activations.residual_extremes(at_the_thresholds())
    assert out["massive/sun_count"] == 1.0  # one value per window
    assert out["massive/median"] == (1 / 16 + 1.0) / 2
    # top1 / median per window, then averaged: (100.5 * 16 + 1000 / 1) / 2
    assert out["massive/top1_over_median"] == (100.5 * 16 + 1000.0) / 2
    assert "massive/top3" in out and "massive/top4" not in out  # top=3 by default


def test_sun_rule_thresholds_are_the_arguments() -> None:
    h = at_the_thresholds()
    assert activations.residual_extremes(h, massive_abs=99.0)["massive/sun_count"] == 1.5
    assert activations.residual_extremes(h, massive_rel=1500.0)["massive/sun_count"] == 0.5


def test_norm_ratio_per_kv_head_with_small_norms() -> None:
    """Keys [N, Hkv, T, hd]: one ratio per head, the denominator pooled over windows and
    positions t >= 1 of that head only; norms below 1 must not be clamped."""
    x = torch.zeros(2, 2, 3, 1)
    x[:, 0, 0, 0] = 0.5  # head 0: |x_0| = 0.5, later tokens 0.25 -> ratio 2
    x[:, 0, 1:, 0] = 0.25
    x[:, 1, 0, 0] = 0.5  # head 1: later tokens 0.125 in window 0, 0.375 in window 1 -> 2
    x[0, 1, 1:, 0] = 0.125
    x[1, 1, 1:, 0] = 0.375
    x[1, 0, 1, 0] = 0.75  # head 0, window 1: t=1 0.75, t=2 0.25 -> mean over all = 0.375
    ratio = activations.first_token_norm_ratio(x)
    # head 0: 0.5 / mean(0.25, 0.25, 0.75, 0.25) = 0.5 / 0.375; head 1: 0.5 / 0.25 = 2
    torch.testing.assert_close(ratio, torch.tensor([0.5 / 0.375, 2.0]))


def test_row_median_equals_torch_median_bit_for_bit() -> None:
    from sinklab.analysis.activations import row_median

    g = torch.Generator().manual_seed(0)
    for n in (1, 2, 7, 8, 8192):
        x = torch.randn(5, n, generator=g).abs()
        x[0, : n // 2] = 1.0  # ties
        assert torch.equal(row_median(x), x.median(dim=1).values), n
    nan = torch.tensor([[1.0, float("nan"), 3.0], [3.0, 1.0, 2.0]])
    assert torch.equal(row_median(nan).isnan(), torch.tensor([True, False]))
    assert row_median(nan)[1] == 2.0
