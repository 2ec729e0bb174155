"""Every emitted metric is registered (and every registered one is emitted by a rich probe),
and the logger scalars are named as the callback expects."""

from __future__ import annotations

import pandas as pd
import torch

from sinklab.analysis import METRICS, MetricsConfig, describe, logger_scalars, measure, template_of
from tests.analysis.analysis_builders import OracleModel, probe_from_maps, sink_map, uniform_causal

N, T, H = 4, 16, 2


def rich_probe_and_model():
    """Two layers, two extra slots, q/k/v, residuals, triggers and a SwiGLU stand-in model."""
    mask = torch.zeros(N, T, dtype=torch.bool)
    mask[:, 3::4] = True
    d = 8
    slots = torch.full((T, 2), 0.1)
    maps = [
        torch.cat([slots, 0.8 * sink_map(T, 0, 0.6)], 1),
        torch.cat([slots, 0.8 * uniform_causal(T)], 1),
    ]
    maps = [m.expand(N, H, T, T + 2).clone() for m in maps]
    cache = {}
    for layer in range(2):
        cache[f"blocks.{layer}.attn.q"] = torch.randn(N, H, T, 4)
        cache[f"blocks.{layer}.attn.k"] = torch.randn(N, 1, T, 4)
        cache[f"blocks.{layer}.attn.v"] = torch.randn(N, 1, T, 4)
        h = torch.randn(N, T, d)
        h[:, 0, 2] = 5000.0
        cache[f"blocks.{layer}.resid_post"] = h
    probe = probe_from_maps(maps, extra_slots=("sink_logit", "kv_bias"), cache=cache)
    model = OracleModel(helps=mask, vocab=8, n_layers=2, d=d)
    ids = torch.randint(0, 8, (N, T))
    ids[:, 0] = torch.arange(N)
    return probe, model, mask, ids


def test_every_emitted_metric_is_registered_and_every_registered_one_is_emitted():
    probe, model, mask, ids = rich_probe_and_model()
    cfg = MetricsConfig(intervention=True, sink_keys=(0, 2), query_start=4)
    df = measure(probe, model=model, cfg=cfg, trigger_mask=mask, input_ids=ids)
    names = set(df.metric)
    unregistered = sorted(n for n in names if template_of(n) is None)
    assert unregistered == []
    # stream/* rows come from the streaming evaluation (tests/analysis/test_streaming.py),
    # quant/* rows from the W8A8 evaluation (tests/analysis/test_quant.py, test_prefix.py),
    # intervention/* rows from the interventions (tests/analysis/test_interventions.py)
    elsewhere = ("stream/", "quant/", "intervention/")
    assert {template_of(n) for n in names} == {t for t in METRICS if not t.startswith(elsewhere)}
    assert all(describe(n).endswith(".") for n in names)
    assert list(df.columns) == ["layer", "head", "metric", "value"]
    assert df.layer.dtype == "int64" and df.value.dtype == "float64"
    assert not df.duplicated(["layer", "head", "metric"]).any()


def test_groups_can_be_switched_off():
    probe, model, mask, ids = rich_probe_and_model()
    cfg = MetricsConfig(
        frames=False, spikes=False, qk=False, massive=False, dormancy=False, outliers=False
    )
    prefixes = {
        n.split("/")[0] for n in measure(probe, model=model, cfg=cfg, trigger_mask=mask).metric
    }
    assert prefixes == {"sink", "slot_mass", "slot_sink_pct"}


def test_logger_scalars_names_and_values():
    df = pd.DataFrame(
        [
            (-1, -1, "sink/sink1_pct", 12.5),
            (3, -1, "sink/first_token_mass", 0.2),
            (3, 1, "sink/first_token_mass", 0.9),  # per-head: stays in the table only
            (2, -1, "massive/top1_over_median", 40.0),
            (0, -1, "frames/class", 1.0),
            (1, -1, "qk/cos_q_k0", float("nan")),
        ],
        columns=["layer", "head", "metric", "value"],
    )
    assert logger_scalars(df) == {
        "sink/sink1_pct": 12.5,
        "sink/first_token_mass/layer_3": 0.2,
        "massive/top1_over_median/layer_2": 40.0,
        "frames/class/layer_0": 1.0,
    }


def test_logger_scalars_of_a_real_measurement_hold_the_headline_curves():
    probe, model, mask, ids = rich_probe_and_model()
    out = logger_scalars(measure(probe, model=model, trigger_mask=mask))
    for key in (
        "sink/sink1_pct",
        "sink/sink_ratio_pct",
        "sink/first_token_mass/layer_1",
        "sink/alpha_0_max",
        "massive/top1_over_median/layer_0",
        "frames/class/layer_0",
        "frames/class",
        "dormancy/resid_peak/layer_1",
    ):
        assert key in out, key
    assert out["massive/top1_channel/layer_1"] == 2.0


def test_every_shared_metric_name_is_registered_and_emitted():
    """The constants in `names` are what readers (summary, reports) look up: each must be a
    registered row name that a rich probe really emits, so a typo fails here, not silently."""
    from sinklab.analysis import names

    probe, model, mask, ids = rich_probe_and_model()
    emitted = set(
        measure(
            probe,
            model=model,
            cfg=MetricsConfig(),
            trigger_mask=mask,
            bos_present=True,
            input_ids=ids,
        )["metric"]
    )
    shared = {v for k, v in vars(names).items() if k.isupper() and isinstance(v, str)}
    assert len(shared) >= 15
    for name in sorted(shared):
        assert template_of(name) is not None, f"{name} is not a registered metric"
        assert name in emitted, f"{name} is never emitted"
    assert set(names.HEADLINE) <= shared
