"""`capture` on a stand-in with the probe contract, and on the real model (imported directly:
a broken import fails here rather than skipping)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sinklab.analysis import (
    METRICS,
    MetricsConfig,
    capture,
    dormancy_intervention,
    logger_scalars,
    measure,
    template_of,
)
from sinklab.model import Transformer
from sinklab.model.config import ModelConfig
from sinklab.model.probe import ProbeOutput, name_filter


class ProbeStandIn(nn.Module):
    """forward_probe returns tensors computed row-wise from the ids, and notes how it was called."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(3))
        self.calls: list[tuple[int, bool, bool]] = []

    def forward_probe(self, input_ids, *, names=None, edits=None) -> ProbeOutput:
        self.calls.append((input_ids.shape[0], self.training, torch.is_grad_enabled()))
        x = input_ids.float()[..., None] * self.w  # [N, T, 3]
        cache = {
            "blocks.0.resid_post": x,
            "blocks.0.attn.pattern": x[:, None, :, :1].expand(-1, 2, -1, x.shape[1]),
            "embed": x + 1,
        }
        keep = name_filter(names)
        return ProbeOutput(
            logits=x * 2,
            cache={k: v for k, v in cache.items() if keep(k)},
            n_layers=1,
            extra_slots=(),
            normalised=True,
        )


def test_capture_chunks_and_matches_one_pass():
    model = ProbeStandIn()
    model.train()
    ids = torch.arange(10 * 4).view(10, 4)
    out = capture(model, ids, batch_size=4)
    assert [c[0] for c in model.calls] == [4, 4, 2]
    assert all(not training and not grad for _, training, grad in model.calls)
    assert model.training  # previous mode restored
    with torch.no_grad():
        whole = model.forward_probe(ids)
    assert torch.equal(out.logits, whole.logits)
    assert torch.equal(out["blocks.0.resid_post"], whole["blocks.0.resid_post"])
    assert out["blocks.0.attn.pattern"].shape == (10, 2, 4, 4)
    assert not out.logits.requires_grad and out.logits.device.type == "cpu"


def test_capture_keeps_only_the_named_tensors_and_restores_eval_mode():
    model = ProbeStandIn().eval()
    out = capture(model, torch.ones(3, 4, dtype=torch.long), names=["resid_post"])
    assert set(out.cache) == {"blocks.0.resid_post"}
    assert not model.training


def _tiny_transformer(**overrides):
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=32, d_model=16, n_layers=2, n_heads=2, max_seq_len=16, **overrides)
    return Transformer(cfg)


def _alpha0_by_hand(probe: ProbeOutput) -> torch.Tensor:
    """alpha_0 per (window, layer, head) from the definition, independently of `measure`:
    the proxy |s| / sum |s| for weights that are not normalised (an all-zero ReLU row stays
    zero), then token 0's column averaged over all T queries (every query sees it)."""
    E = len(probe.extra_slots)
    per_layer = []
    for layer in range(probe.n_layers):
        p = probe[f"blocks.{layer}.attn.pattern"].double()
        if not probe.normalised:
            total = p.abs().sum(-1, keepdim=True)
            p = torch.where(total > 0, p.abs() / total.clamp_min(1e-300), 0.0)
        per_layer.append(p[..., E].mean(-1))  # [N, H]
    return torch.stack(per_layer, dim=1)


def _split_eps(alpha0: torch.Tensor) -> float:
    """An eps halfway between two neighbouring alpha_0 values in the middle half, so Sink_1
    is neither 0 nor 100, a wrong threshold shows, and float noise cannot flip a head."""
    ordered = alpha0.flatten().sort().values
    gaps = ordered[1:] - ordered[:-1]
    middle = range(len(ordered) // 4, 3 * len(ordered) // 4)
    i = max(middle, key=lambda j: float(gaps[j]))  # the widest gap there
    assert gaps[i] > 1e-5
    return float(ordered[i] + ordered[i + 1]) / 2


@pytest.mark.parametrize(
    "overrides", [{}, {"attention": "sink_logit", "kv_bias": True}, {"attention": "relu"}]
)
def test_capture_and_measure_on_the_real_model(overrides):
    model = _tiny_transformer(**overrides)
    ids = torch.randint(0, 32, (6, 16), generator=torch.Generator().manual_seed(1))
    probe = capture(model, ids, batch_size=4)
    pattern = probe["blocks.1.attn.pattern"]
    E = len(probe.extra_slots)
    assert pattern.shape == (6, 2, 16, E + 16)
    assert probe.normalised == (overrides.get("attention") != "relu")
    if probe.normalised:
        assert torch.allclose(pattern.sum(-1), torch.ones(6, 2, 16), atol=1e-5)
    alpha0 = _alpha0_by_hand(probe)
    eps = _split_eps(alpha0)
    df = measure(probe, model=model, cfg=MetricsConfig(eps=eps), bos_present=True)
    assert all(template_of(n) is not None for n in set(df.metric))
    assert {f"slot_mass/{s}" for s in probe.extra_slots} <= set(df.metric)
    scalars = logger_scalars(df)
    expected = 100.0 * (alpha0 > eps).double().mean().item()
    assert 0.0 < expected < 100.0  # the split makes the comparison sharp
    assert scalars["sink/sink1_pct"] == pytest.approx(expected)
    assert "spike/u_fro/rank_0/layer_1" in scalars
    assert set(METRICS)  # registry loaded


def test_intervention_plumbing_on_the_real_model():
    """Nothing labelled dormant -> the 'dormant' run zeroes nothing and the loss cannot move;
    everything labelled dormant -> zeroing a head changes the loss of a random model."""
    model = _tiny_transformer()
    ids = torch.randint(0, 32, (4, 16), generator=torch.Generator().manual_seed(2))
    none = torch.zeros(4, 2, 2, 16, dtype=torch.bool)
    df = dormancy_intervention(model, ids, none, heads=[(0, 1), (1, 0)], batch_size=3)
    assert df[df.metric == "dormancy/delta_loss_dormant"].value.abs().max() == 0.0
    assert df[df.metric == "dormancy/delta_loss_active"].value.abs().min() > 0.0
    probe = capture(model, ids)
    full = measure(
        probe, model=model, cfg=MetricsConfig(intervention=True), bos_present=True, input_ids=ids
    )
    assert (full.metric == "dormancy/delta_loss_active").sum() == 4  # 2 layers x 2 heads
