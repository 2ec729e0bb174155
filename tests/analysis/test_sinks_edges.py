"""Edges of the sink-score functions: default arguments, other ranks than [N, H, T, T],
grouped-query heads, tiny windows, the last key, the device a result lives on, and the
error message of a malformed pattern. Expected values are hand-computed or loops."""

from __future__ import annotations

import pytest
import torch

from sinklab.analysis import sinks
from tests.analysis.analysis_builders import qk_geometry_by_loops, uniform_causal

META = torch.device("meta")


def test_alpha_gu_is_causal_by_default():
    """Uniform causal map, T = 4: alpha_k = sum_{t>=k} 1/(t+1) / (T - k)."""
    harmonic = [1.0, 1 / 2, 1 / 3, 1 / 4]
    want = [sum(harmonic[k:]) / (4 - k) for k in range(4)]
    assert sinks.alpha_gu(uniform_causal(4)).tolist() == pytest.approx(want)
    assert sinks.alpha_gu(uniform_causal(4), causal=False).tolist() == pytest.approx(
        [sum(harmonic[k:]) / 4 for k in range(4)]
    )


def test_score_functions_build_on_the_device_of_their_input():
    """The visibility mask and divisors are made where the map lives (here the meta device,
    which stands in for an accelerator: mixing it with CPU tensors fails)."""
    visible = sinks.causal_visibility(3, META)
    assert visible.device == META and visible.dtype == torch.bool
    assert sinks.causal_visibility(3).tolist() == [
        [True, False, False],
        [True, True, False],
        [True, True, True],
    ]
    assert sinks.causal_visibility(2, causal=False).dtype == torch.bool
    alpha = sinks.alpha_gu(torch.rand(2, 3, 4, 4).to(META))
    assert alpha.device == META and alpha.shape == (2, 3, 4)


def test_first_token_mass_per_window_and_head():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 5, 5, generator=g)
    got = sinks.first_token_mass(a)
    assert got.shape == (2, 3)
    for n in range(2):
        for h in range(3):
            want = sum(float(a[n, h, t, 0]) for t in range(1, 5)) / 4
            assert float(got[n, h]) == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("shape", [(3, 5, 2), (2, 3, 5, 2)])
def test_slot_alpha_averages_over_queries_at_any_rank(shape):
    """[H, T, E] and [N, H, T, E]: alpha_e = mean over the T queries."""
    g = torch.Generator().manual_seed(1)
    slots = torch.rand(*shape, generator=g)
    got = sinks.slot_alpha(slots)
    assert got.shape == shape[:-2] + shape[-1:]
    flat_in = slots.reshape(-1, shape[-2], shape[-1])
    flat_out = got.reshape(-1, shape[-1])
    for b in range(flat_in.shape[0]):
        for e in range(shape[-1]):
            want = sum(float(flat_in[b, t, e]) for t in range(shape[-2])) / shape[-2]
            assert float(flat_out[b, e]) == pytest.approx(want, rel=1e-6)


def test_split_slots_of_a_single_window_and_its_error_message():
    """A [H, T, E + T] pattern splits at E; a wrong width names the key-column count."""
    p = torch.rand(3, 4, 2 + 4)
    slots, tokens = sinks.split_slots(p, 2)
    assert torch.equal(slots, p[..., :2]) and torch.equal(tokens, p[..., 2:])
    with pytest.raises(ValueError, match=r"has 7 key columns, expected 2 slots \+ 4 tokens"):
        sinks.split_slots(torch.rand(2, 3, 4, 7), 2)


def test_sink_ratio_sees_the_last_key_when_max_key_reaches_it():
    """All queries on key 3 of T = 4: alpha'_3 = 1. max_key 3 (or beyond) includes it;
    max_key 2 and the default T // 2 = 2 do not."""
    a = torch.zeros(4, 4)
    a[:, 3] = 1.0
    assert sinks.sink_ratio_hit(a, 0.3, 3).item() == 1.0
    assert sinks.sink_ratio_hit(a, 0.3, 10).item() == 1.0
    assert sinks.sink_ratio_hit(a, 0.3, 2).item() == 0.0
    assert sinks.sink_ratio_hit(a, 0.3).item() == 0.0


@pytest.mark.parametrize(
    ("n_heads", "n_kv", "t_len", "causal"),
    [(4, 2, 5, True), (4, 2, 5, False), (6, 3, 3, True), (2, 2, 2, True), (3, 1, 4, True)],
)
def test_qk_geometry_matches_loops_with_grouped_heads(n_heads, n_kv, t_len, causal):
    """Grouped-query heads (rep 2 and 3), one kv head for all, and T = 2 (a single causal
    pair t = j = 1, so the cos_q_kj mean is that pair's cosine)."""
    g = torch.Generator().manual_seed(n_heads * 10 + t_len)
    q = torch.randn(2, n_heads, t_len, 3, generator=g)
    k = torch.randn(2, n_kv, t_len, 3, generator=g)
    got = sinks.qk_geometry(q, k, causal) if not causal else sinks.qk_geometry(q, k)
    want = qk_geometry_by_loops(q, k, causal)
    for metric, key in (
        ("qk/k0_norm", "k0"),
        ("qk/kt_norm_mean", "kt"),
        ("qk/cos_q_k0", "c0"),
        ("qk/cos_q_kj", "cj"),
    ):
        assert got[metric].shape == (2, n_heads), metric
        torch.testing.assert_close(got[metric], want[key], rtol=1e-5, atol=1e-6)
