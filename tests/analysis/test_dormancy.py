"""Active / dormant heads on a constructed map with triggers, and the intervention on a
stand-in model whose loss is known in closed form."""

from __future__ import annotations

import math

import pytest
import torch

from sinklab.analysis import MetricsConfig, dormancy_intervention, measure
from tests.analysis.analysis_builders import OracleModel, probe_from_maps

N, T, H = 4, 16, 2


def triggers() -> torch.Tensor:
    g = torch.Generator().manual_seed(3)
    mask = torch.rand(N, T, generator=g) < 0.3
    mask[:, 0] = False  # BOS is never a trigger
    mask[:, 5] = True  # at least one trigger per window
    return mask


def bos_map(mask: torch.Tensor) -> torch.Tensor:
    """Head 0 parks 0.9 on BOS at non-triggers and 0.05 at triggers (Guo et al.'s dormant
    head); head 1 always gives BOS 0.1. The rest of each row is spread over keys 1..t."""
    bos = torch.where(mask, 0.05, 0.9)[:, None, :].expand(N, H, T).clone()
    bos[:, 1] = 0.1
    pattern = torch.zeros(N, H, T, T)
    for t in range(1, T):
        pattern[..., t, 1 : t + 1] = ((1 - bos[..., t]) / t)[..., None]
    pattern[..., :, 0] = bos
    pattern[..., 0, 0] = 1.0
    return pattern


def rows(df, metric):
    return df[(df.metric == metric) & (df.layer == 0) & (df["head"] >= 0)].set_index("head").value


def test_active_dormant_switch_on_constructed_map():
    mask = triggers()
    pattern = bos_map(mask)
    assert torch.allclose(pattern.sum(-1), torch.ones(N, H, T))
    df = measure(probe_from_maps([pattern]), trigger_mask=mask)
    assert rows(df, "dormancy/bos_attn_trigger").tolist() == pytest.approx([0.05, 0.1])
    assert rows(df, "dormancy/bos_attn_nontrigger").tolist() == pytest.approx([0.9, 0.1])
    assert rows(df, "dormancy/dormant_frac_trigger").tolist() == [0.0, 0.0]
    assert rows(df, "dormancy/dormant_frac_nontrigger").tolist() == [1.0, 0.0]
    share_nontrigger = float((~mask[:, 1:]).float().mean())
    assert rows(df, "dormancy/dormant_frac").tolist() == pytest.approx([share_nontrigger, 0.0])


def test_no_bos_metrics_when_bos_is_absent():
    mask = triggers()
    df = measure(probe_from_maps([bos_map(mask)]), trigger_mask=mask, bos_present=False)
    assert not df.metric.str.startswith("dormancy/").any()
    df = measure(probe_from_maps([bos_map(mask)]))  # bos unknown and no triggers: Gu's protocol
    assert not df.metric.str.startswith("dormancy/").any()


def test_value_drain_and_residual_peak():
    mask = triggers()
    v = torch.ones(N, 1, T, 4)
    v[:, 0, 0] = 0.5
    h = torch.ones(N, T, 8)
    h[:, 0] = 3.0
    df = measure(
        probe_from_maps([bos_map(mask)], cache={"blocks.0.attn.v": v, "blocks.0.resid_post": h}),
        bos_present=True,
    )
    assert rows(df, "dormancy/value_drain").tolist() == pytest.approx([0.5])
    peak = df[(df.metric == "dormancy/resid_peak") & (df.layer == 0)].value.item()
    assert peak == pytest.approx(3.0)


def ids_for(n: int, vocab: int) -> torch.Tensor:
    ids = torch.randint(0, vocab, (n, T))
    ids[:, 0] = torch.arange(n)  # OracleModel finds its window by the first token
    return ids


def test_intervention_on_a_model_where_the_answer_is_known():
    """Head 0 helps only at triggers; the label says it is dormant elsewhere. Zeroing it where
    dormant leaves the loss exactly unchanged; zeroing it where active costs exactly the help."""
    mask = triggers()
    vocab, boost = 8, 10.0
    model = OracleModel(helps=mask, vocab=vocab, boost=boost)
    model.train()
    ids = ids_for(N, vocab)
    labels = (~mask)[:, None, None, :].expand(N, 1, H, T).clone()  # head 0 and 1 labelled alike
    df = dormancy_intervention(model, ids, labels, batch_size=3)
    assert model.training  # mode restored
    at = lambda m, h: df[(df.metric == m) & (df["head"] == h)].value.item()  # noqa: E731
    helped = float(mask[:, :-1].sum())
    preds = N * (T - 1)
    good, bad = math.log(1 + (vocab - 1) * math.exp(-boost)), math.log(vocab)
    base = (helped * good + (preds - helped) * bad) / preds
    assert df[df.metric == "dormancy/base_loss"].value.item() == pytest.approx(base)
    assert at("dormancy/delta_loss_dormant", 0) == pytest.approx(0.0, abs=1e-9)
    assert at("dormancy/delta_loss_active", 0) == pytest.approx(helped / preds * (bad - good))
    assert at("dormancy/delta_loss_active", 1) == pytest.approx(
        0.0, abs=1e-9
    )  # head 1 does nothing
    assert at("dormancy/zeroed_frac_dormant", 0) == pytest.approx(float((~mask).float().mean()))


def test_intervention_respects_the_loss_mask():
    mask = triggers()
    model = OracleModel(helps=mask, vocab=8)
    ids = ids_for(N, 8)
    labels = (~mask)[:, None, None, :].expand(N, 1, H, T).clone()
    only_nontrigger = ~mask  # score only predictions made at non-triggers: head 0 never helps there
    df = dormancy_intervention(model, ids, labels, loss_mask=only_nontrigger, heads=[(0, 0)])
    assert df[df.metric == "dormancy/base_loss"].value.item() == pytest.approx(math.log(8))
    assert df[df.metric == "dormancy/delta_loss_active"].value.item() == pytest.approx(
        0.0, abs=1e-9
    )
    assert set(df["head"]) == {-1, 0}


def test_measure_runs_the_intervention_from_its_own_labels():
    mask = triggers()
    model = OracleModel(helps=mask, vocab=8)
    ids = ids_for(N, 8)
    probe = probe_from_maps([bos_map(mask)])
    cfg = MetricsConfig(intervention=True)
    df = measure(probe, model=model, cfg=cfg, trigger_mask=mask, input_ids=ids)
    d0 = df[(df.metric == "dormancy/delta_loss_dormant") & (df["head"] == 0)].value.item()
    a0 = df[(df.metric == "dormancy/delta_loss_active") & (df["head"] == 0)].value.item()
    assert d0 == pytest.approx(0.0, abs=1e-9)
    assert a0 > 0.5
    assert (
        not measure(probe, model=model, trigger_mask=mask, input_ids=ids)
        .metric.str.contains("delta_loss")
        .any()
    )


def test_split_by_trigger_skips_bos_and_counts_per_head() -> None:
    """Hand-computed group means: position 0 never counts (even when marked a trigger), a
    group of one position is its value, a group with no positions is NaN, per head."""
    from sinklab.analysis.dormancy import split_by_trigger

    values = torch.arange(2 * 2 * 4, dtype=torch.float32).view(2, 2, 4)  # [N, H, T]
    trig = torch.tensor([[True, True, False, False], [True, False, False, False]])
    on, off = split_by_trigger(values, trig)
    # triggers at t >= 1: only (window 0, t 1): head 0 -> 1, head 1 -> 5
    torch.testing.assert_close(on, torch.tensor([1.0, 5.0]))
    # the rest at t >= 1: window 0 t 2, 3 and window 1 t 1, 2, 3
    torch.testing.assert_close(
        off, torch.tensor([(2 + 3 + 9 + 10 + 11) / 5, (6 + 7 + 13 + 14 + 15) / 5])
    )
    none_on, _ = split_by_trigger(values, torch.zeros(2, 4, dtype=torch.bool))
    assert bool(none_on.isnan().all())


def test_dormancy_label_default_threshold_is_one_half() -> None:
    from sinklab.analysis.dormancy import dormancy_labels

    got = dormancy_labels(torch.tensor([0.5, 0.4999, 0.9]))
    assert got.tolist() == [True, False, True]


def test_bos_residual_norm_is_position_zeros() -> None:
    """The absolute BOS residual norm (Guo et al.'s 141 vs 20): |h_0| per window, averaged."""
    attn = torch.full((T, T), 0.0)
    attn[:, 0] = 1.0
    resid = torch.ones(2, T, 4)
    resid[0, 0] = torch.tensor([3.0, 4.0, 0.0, 0.0])  # |h_0| = 5
    resid[1, 0] = torch.tensor([0.0, 0.0, 6.0, 8.0])  # |h_0| = 10
    probe = probe_from_maps([attn], cache={"blocks.0.resid_post": resid})
    df = measure(probe, bos_present=True)
    got = df[(df.metric == "dormancy/bos_resid_norm") & (df.layer == 0)].value
    assert got.tolist() == [7.5]
