"""Sink scores on hand-built maps whose answers follow from the definitions in metrics.md."""

from __future__ import annotations

import math

import pytest
import torch

from sinklab.analysis import MetricsConfig, measure, sinks
from tests.analysis.analysis_builders import probe_from_maps, sink_map, uniform_causal

T = 64


def value(df, metric, layer=-1, head=-1):
    hit = df[(df.metric == metric) & (df.layer == layer) & (df["head"] == head)]
    assert len(hit) == 1, f"{metric} at ({layer}, {head}): {len(hit)} rows"
    return float(hit.value.iloc[0])


def test_half_mass_on_key0_is_sink1_100pct():
    df = measure(probe_from_maps([sink_map(T, 0, 0.5), sink_map(T, 0, 0.5)]))
    assert value(df, "sink/sink1_pct") == 100.0
    assert value(df, "sink/first_token_mass", layer=1) == pytest.approx(0.5)
    # alpha_0 = (1 + 63 * 0.5) / 64: row 0 sees only key 0
    assert value(df, "sink/alpha/key_0", layer=0, head=2) == pytest.approx(32.5 / 64)
    assert value(df, "sink/sink_ratio_pct") == 100.0


def test_uniform_causal_map_has_no_sink():
    df = measure(probe_from_maps([uniform_causal(T)]))
    harmonic = sum(1 / (t + 1) for t in range(T))
    assert value(df, "sink/sink1_pct") == 0.0
    assert value(df, "sink/sink_ratio_pct") == 0.0
    assert value(df, "sink/alpha/key_0", 0, 0) == pytest.approx(harmonic / T)
    assert value(df, "sink/first_token_mass") == pytest.approx(
        sum(1 / (t + 1) for t in range(1, T)) / (T - 1)
    )
    # alpha_k = (H_T - H_k) / (T - k)
    h = lambda n: sum(1 / i for i in range(1, n + 1))  # noqa: E731
    assert value(df, "sink/alpha/key_3", 0, 1) == pytest.approx((h(T) - h(3)) / (T - 3))


def test_sink_on_key5_is_missed_by_sink1_and_caught_by_sink_ratio():
    cfg = MetricsConfig(sink_keys=(0, 5))
    df = measure(probe_from_maps([sink_map(T, 5, 0.5)]), cfg=cfg)
    assert value(df, "sink/sink1_pct") == 0.0
    assert value(df, "sink/sink_ratio_pct") == 100.0
    assert value(df, "sink/sink_pct/key_5") == 100.0
    assert value(df, "sink/alpha/key_0", 0, 0) < 0.1


def test_sink_ratio_ignores_keys_past_half_the_window():
    # the same sink on key 40 > T/2: alpha'_40 = 0.5 * 24 / 64 < eps anyway, so use a bigger mass
    df = measure(probe_from_maps([sink_map(T, 40, 1.0)]))
    assert sinks.alpha_spike(sink_map(T, 40, 1.0))[40] > 0.3
    assert value(df, "sink/sink_ratio_pct") == 0.0


def test_sink_pct_counts_windows_and_heads_separately():
    maps = torch.stack([sink_map(T, 0, 0.5), uniform_causal(T)])  # window 0 sinks, window 1 not
    pattern = maps[:, None].expand(2, 4, T, T).clone()
    pattern[:, 3] = uniform_causal(T)  # head 3 never sinks
    df = measure(probe_from_maps([pattern]))
    assert value(df, "sink/sink1_pct", 0, 0) == 50.0
    assert value(df, "sink/sink1_pct", 0, 3) == 0.0
    assert value(df, "sink/sink1_pct") == pytest.approx(100 * 3 / 8)
    assert value(df, "sink/alpha_0_max", 0) == pytest.approx(
        0.5 * (32.5 / 64 + sum(1 / (t + 1) for t in range(T)) / T)
    )


def test_proxy_scores_on_sigmoid_weights():
    # sigmoid weights, not normalised: 0.9 on key 0, 0.1 on every other visible key
    raw = torch.full((T, T), 0.1).tril()
    raw[:, 0] = 0.9
    on = measure(probe_from_maps([raw], normalised=False))
    expected_mass = sum(0.9 / (0.9 + 0.1 * t) for t in range(1, T)) / (T - 1)
    assert value(on, "sink/first_token_mass") == pytest.approx(expected_mass)
    assert value(on, "sink/proxy_scores") == 1.0
    alpha0 = sum(0.9 / (0.9 + 0.1 * t) for t in range(T)) / T
    assert value(on, "sink/alpha/key_0", 0, 0) == pytest.approx(alpha0)
    # read as if normalised, the raw weights would give 0.9: the proxy is what changed it
    raw_read = measure(probe_from_maps([raw], normalised=True))
    assert value(raw_read, "sink/first_token_mass") == pytest.approx(0.9)


def test_proxy_uses_absolute_values_for_signed_scores():
    s = torch.tensor([[2.0, -1.0, -1.0], [0.0, 0.0, 0.0]])
    out = sinks.proxy_scores(s)
    assert torch.allclose(out[0], torch.tensor([0.5, 0.25, 0.25]))
    assert torch.equal(out[1], torch.zeros(3))  # an all-zero ReLU row stays zero, no NaN


def test_extra_slot_scores_are_reported_apart_from_token_0():
    # slot "sink_token_0" takes 0.8 of every row, "kv_bias" 0.05, tokens the rest uniformly
    tokens = 0.15 * uniform_causal(T)
    slots = torch.stack([torch.full((T,), 0.8), torch.full((T,), 0.05)], dim=1)
    df = measure(
        probe_from_maps(
            [torch.cat([slots, tokens], dim=1)], extra_slots=("sink_token_0", "kv_bias")
        )
    )
    assert value(df, "slot_mass/sink_token_0") == pytest.approx(0.8)
    assert value(df, "slot_sink_pct/sink_token_0") == 100.0
    assert value(df, "slot_mass/kv_bias", 0, 1) == pytest.approx(0.05)
    assert value(df, "slot_sink_pct/kv_bias") == 0.0
    assert value(df, "sink/sink1_pct") == 0.0
    assert value(df, "sink/first_token_mass") == pytest.approx(
        0.15 * sum(1 / (t + 1) for t in range(1, T)) / (T - 1)
    )


def test_slot_count_mismatch_is_an_error():
    with pytest.raises(ValueError, match="slots"):
        measure(probe_from_maps([uniform_causal(T)], extra_slots=("kv_bias",)))


def test_qk_geometry_on_planted_keys():
    N, H, hd = 2, 2, 4
    k = torch.zeros(N, 1, T, hd)
    k[..., 0, 0] = 0.5  # key 0: short, along e0
    k[..., 1:, 1] = 2.0  # later keys: long, along e1
    q = torch.zeros(N, H, T, hd)
    q[..., 0] = 1.0  # every query along e0
    geo = sinks.qk_geometry(q, k)  # GQA: one kv head serves both query heads
    assert torch.allclose(geo["qk/k0_norm"], torch.full((N, H), 0.5))
    assert torch.allclose(geo["qk/kt_norm_mean"], torch.full((N, H), 2.0))
    assert torch.allclose(geo["qk/cos_q_k0"], torch.ones(N, H))
    assert torch.allclose(geo["qk/cos_q_kj"], torch.zeros(N, H))
    probe = probe_from_maps(
        [uniform_causal(T).expand(N, H, T, T)], cache={"blocks.0.attn.q": q, "blocks.0.attn.k": k}
    )
    df = measure(probe)
    assert value(df, "qk/cos_q_k0", 0, 1) == pytest.approx(1.0)
    assert value(df, "qk/k0_norm") == pytest.approx(0.5)
    assert not math.isnan(value(df, "qk/cos_q_kj"))


def test_sink_ratio_hit_window_of_keys_and_strictness() -> None:
    """Spike's s_eps looks at keys k <= max_key (T // 2 by default) and counts alpha' > eps.
    T = 8: rows 0-2 attend to themselves, rows 3-7 to key 3, so alpha'_3 = 5/8 and
    alpha'_0..2 = 1/8 (exact in binary)."""
    T = 8
    attn = torch.zeros(T, T)
    for t in range(T):
        attn[t, min(t, 3)] = 1.0
    assert sinks.sink_ratio_hit(attn, 0.3).item() == 1.0  # key 3 <= T // 2 = 4
    assert sinks.sink_ratio_hit(attn, 0.3, max_key=3).item() == 1.0
    assert sinks.sink_ratio_hit(attn, 0.3, max_key=2).item() == 0.0  # key 3 is out of reach
    assert sinks.sink_ratio_hit(attn, 0.3, max_key=100).item() == 1.0  # clipped to T - 1
    assert sinks.sink_ratio_hit(attn, 5 / 8).item() == 0.0  # alpha' == eps does not count
    assert sinks.sink_ratio_hit(attn, 5 / 8 - 1e-6).item() == 1.0
    assert sinks.sink_ratio_hit(attn, 0.1, max_key=2).item() == 1.0  # 1/8 > 0.1
