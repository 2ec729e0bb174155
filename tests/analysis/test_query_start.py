"""Sink metrics on the queries t >= metrics.query_start only (issue 31, item 3): hand-built
maps with answers worked out from the definitions, a loop oracle, and the all-queries rows
left exactly as they were."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from sinklab.analysis import MetricsConfig, measure, names, sinks
from sinklab.errors import ConfigError
from tests.analysis.analysis_builders import probe_from_maps

T = 6
LATE = names.from_query_start


def early_sink_map() -> torch.Tensor:
    """Queries 0-2 put all their mass on key 0; queries 3-5 spread it evenly over keys 0..t."""
    a = torch.zeros(T, T)
    a[:3, 0] = 1.0
    for t in range(3, T):
        a[t, : t + 1] = 1.0 / (t + 1)
    return a


def late_sink_map() -> torch.Tensor:
    """The reverse: queries 0-2 spread evenly over keys 0..t; queries 3-5 put all on key 0."""
    a = torch.zeros(T, T)
    for t in range(3):
        a[t, : t + 1] = 1.0 / (t + 1)
    a[3:, 0] = 1.0
    return a


def two_head_probe():
    """One window, one layer, head 0 = early_sink_map, head 1 = late_sink_map."""
    pattern = torch.stack([early_sink_map(), late_sink_map()])[None]  # [1, 2, T, T]
    return probe_from_maps([pattern])


def value(df: pd.DataFrame, metric: str, layer: int = -1, head: int = -1) -> float:
    hit = df[(df.metric == metric) & (df.layer == layer) & (df["head"] == head)]
    assert len(hit) == 1, f"{metric} at ({layer}, {head}): {len(hit)} rows"
    return float(hit.value.iloc[0])


SINK_ONLY = dict(
    qk=False, massive=False, spikes=False, frames=False, dormancy=False, outliers=False
)


def test_early_sink_is_seen_on_all_queries_and_gone_from_query_3():
    # head 0, A[t, 0] = 1, 1, 1, 1/4, 1/5, 1/6; head 1, A[t, 0] = 1, 1/2, 1/3, 1, 1, 1
    df = measure(two_head_probe(), cfg=MetricsConfig(query_start=3, **SINK_ONLY))
    late_head0 = (1 / 4 + 1 / 5 + 1 / 6) / 3  # 37/180 < eps 0.3
    # all queries: alpha_0 = (3 + 37/60) / 6 and (1 + 1/2 + 1/3 + 3) / 6, both > 0.3
    assert value(df, "sink/alpha/key_0", 0, 0) == pytest.approx(217 / 360)
    assert value(df, "sink/alpha/key_0", 0, 1) == pytest.approx(29 / 36)
    assert value(df, names.SINK1) == 100.0
    assert value(df, names.SINK_RATIO) == 100.0
    assert value(df, names.FIRST_TOKEN_MASS, 0, 0) == pytest.approx((2 + 37 / 60) / 5)
    assert value(df, names.FIRST_TOKEN_MASS, 0, 1) == pytest.approx((1 / 2 + 1 / 3 + 3) / 5)
    assert value(df, names.ALPHA0_MAX) == pytest.approx(29 / 36)
    # queries 3-5 only: head 0's alpha_0 = 37/180, head 1's = 1
    assert value(df, LATE(names.SINK1), 0, 0) == 0.0
    assert value(df, LATE(names.SINK1), 0, 1) == 100.0
    assert value(df, LATE(names.SINK1)) == 50.0
    # head 0: every key 0..3 gets 37/180 from queries 3-5 (uniform rows), divisor 3: no hit
    assert value(df, LATE(names.SINK_RATIO), 0, 0) == 0.0
    assert value(df, LATE(names.SINK_RATIO), 0, 1) == 100.0
    assert value(df, LATE(names.FIRST_TOKEN_MASS), 0, 0) == pytest.approx(late_head0)
    assert value(df, LATE(names.FIRST_TOKEN_MASS), 0, 1) == pytest.approx(1.0)
    assert value(df, LATE(names.FIRST_TOKEN_MASS), 0, -1) == pytest.approx((late_head0 + 1) / 2)
    assert value(df, LATE(names.ALPHA0_MAX), 0, -1) == pytest.approx(1.0)
    assert value(df, LATE(names.ALPHA0_MAX)) == pytest.approx(1.0)


def test_first_token_mass_from_query_0_still_skips_query_0():
    """The first-token mass keeps its own query set (t >= 1) inside t >= query_start."""
    a = early_sink_map()[None, None]
    assert float(sinks.first_token_mass_from(a, 0)) == pytest.approx(
        float(sinks.first_token_mass(a))
    )
    assert float(sinks.first_token_mass_from(a, 1)) == pytest.approx((2 + 37 / 60) / 5)
    assert float(sinks.alpha0_from(a, 0)) == pytest.approx(217 / 360)  # query 0 counts for alpha_0


def test_sink_ratio_from_a_query_divides_by_the_queries_it_keeps():
    """Queries 3-5 put 0.5 on key 2: alpha'_3[2] = 1.5 / 3 = 0.5 (over all queries it would be
    (1/3 + 1.5) / 6 = 0.31); a divisor of T instead of T - s would give 0.25."""
    a = torch.zeros(T, T)
    for t in range(3):
        a[t, : t + 1] = 1.0 / (t + 1)
    for t in range(3, T):
        a[t, : t + 1] = 0.5 / t
        a[t, 2] = 0.5
    a = a[None, None]
    assert torch.allclose(a.sum(-1), torch.ones(1, 1, T))
    assert float(sinks.sink_ratio_hit_from(a, 0.45, 3)) == 1.0
    assert float(sinks.sink_ratio_hit_from(a, 0.55, 3)) == 0.0
    # max_key below the sink's key: not counted, as for the all-queries ratio
    assert float(sinks.sink_ratio_hit_from(a, 0.45, 3, max_key=1)) == 0.0


def _oracle(pattern: torch.Tensor, start: int, eps: float) -> dict[str, torch.Tensor]:
    """The definitions by loops over windows, heads, queries and keys ([H] per metric)."""
    N, H, n, _ = pattern.shape
    sink1, ratio, ftm, alpha0 = (torch.zeros(H, dtype=torch.float64) for _ in range(4))
    for h in range(H):
        for w in range(N):
            a = pattern[w, h].double()
            kept = range(start, n)
            a0 = sum(a[t, 0] for t in kept) / len(kept)
            alpha0[h] += a0 / N
            sink1[h] += 100.0 * float(a0 > eps) / N
            best = max(sum(a[t, k] for t in kept) / len(kept) for k in range(n // 2 + 1))
            ratio[h] += 100.0 * float(best > eps) / N
            ftm_queries = range(max(1, start), n)
            ftm[h] += sum(a[t, 0] for t in ftm_queries) / len(ftm_queries) / N
    return {
        LATE(names.SINK1): sink1,
        LATE(names.SINK_RATIO): ratio,
        LATE(names.FIRST_TOKEN_MASS): ftm,
        "alpha0": alpha0,
    }


@pytest.mark.parametrize("start", [1, 5, 11])
def test_rows_match_a_loop_oracle_on_random_causal_maps(start):
    torch.manual_seed(start)
    N, H, n = 5, 3, 12
    scores = 3.0 * torch.randn(N, H, n, n)
    scores[..., 0] += 2.0 * torch.rand(N, H, 1)  # some heads lean on key 0
    scores = scores.masked_fill(~torch.ones(n, n, dtype=torch.bool).tril(), float("-inf"))
    maps = [scores.softmax(-1), scores.flip(1).softmax(-1)]
    df = measure(probe_from_maps(maps), cfg=MetricsConfig(query_start=start, **SINK_ONLY))
    for layer, pattern in enumerate(maps):
        want = _oracle(pattern, start, 0.3)
        for h in range(H):
            for metric in (LATE(names.SINK1), LATE(names.SINK_RATIO), LATE(names.FIRST_TOKEN_MASS)):
                assert value(df, metric, layer, h) == pytest.approx(float(want[metric][h]))
        got_max = value(df, LATE(names.ALPHA0_MAX), layer, -1)
        assert got_max == pytest.approx(float(want["alpha0"].max()))


def test_all_queries_rows_are_unchanged_and_query_start_0_adds_nothing():
    torch.manual_seed(0)
    scores = torch.randn(4, 2, 16, 16).masked_fill(
        ~torch.ones(16, 16, dtype=torch.bool).tril(), float("-inf")
    )
    probe = probe_from_maps([scores.softmax(-1), scores.softmax(-1).roll(1, 1)])
    before = measure(probe, cfg=MetricsConfig())
    zero = measure(probe, cfg=MetricsConfig(query_start=0))
    pd.testing.assert_frame_equal(zero, before)
    assert not before.metric.str.endswith("/from_query_start").any()
    later = measure(probe, cfg=MetricsConfig(query_start=8))
    added = later.metric.str.endswith("/from_query_start")
    assert set(later.metric[added]) == {LATE(m) for m in names.FROM_QUERY_START}
    pd.testing.assert_frame_equal(later[~added].reset_index(drop=True), before)


def test_query_start_is_refused_below_0_and_past_the_window():
    with pytest.raises(ConfigError) as err:
        MetricsConfig(query_start=-1)
    assert str(err.value) == "metrics.query_start: must be >= 0 (0: no extra rows), got -1"
    with pytest.raises(ConfigError) as err:
        MetricsConfig.from_dict({"query_start": -2})
    assert str(err.value).startswith("metrics.query_start: ")
    with pytest.raises(ConfigError) as err:
        measure(two_head_probe(), cfg=MetricsConfig(query_start=T))
    assert str(err.value) == (
        f"metrics.query_start: {T} leaves no query in a {T}-token probe window; use 0..{T - 1}"
    )
    with pytest.raises(ValueError, match="outside the window's queries 0..5"):
        sinks.alpha0_from(early_sink_map(), T)


def test_min_context_sweep_measures_every_setting_from_its_largest_min_context():
    """All settings are compared on the same queries, the ones every setting trains on."""
    from pathlib import Path

    from omegaconf import OmegaConf

    from sinklab.configs import CONF_DIR

    sweep = OmegaConf.load(Path(CONF_DIR) / "experiment" / "min_context_sweep.yaml")
    values = [int(v) for v in str(sweep.hydra.sweeper.params["data.min_context"]).split(",")]
    assert sweep.callbacks.probe.metrics.query_start == max(values) > 0
