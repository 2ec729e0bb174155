"""The probe path: equivalence with the training path, names, shapes, and what each variant's
attention weights must be."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import sinklab.model.attention as attention_module
from sinklab.model import build_model
from sinklab.model.config import POSITIONS

from .helpers import SOFTMAX_STYLE, tiny

N, T = 2, 8


def _ids(cfg) -> torch.Tensor:
    return torch.randint(0, cfg.vocab_size, (N, T))


@pytest.mark.parametrize("pos", POSITIONS)
@pytest.mark.parametrize("attention", SOFTMAX_STYLE)
@pytest.mark.parametrize("extras", [{}, dict(n_sink_tokens=2, kv_bias=True)])
def test_probe_logits_equal_training_logits(pos: str, attention: str, extras: dict) -> None:
    cfg = tiny(pos=pos, attention=attention, qk_norm=True, **extras)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for blk in model.blocks:  # non-zero sink logits so that column matters
            if hasattr(blk.attn, "sink_logit"):
                blk.attn.sink_logit.normal_()
        ids = _ids(cfg)
        fused = model(ids)
        probe = model.forward_probe(ids)
    assert "blocks.1.attn.pattern" in probe  # the explicit path really ran
    torch.testing.assert_close(probe.logits, fused, rtol=0, atol=1e-5)


def test_plain_causal_kernel_without_mask(monkeypatch) -> None:
    """Softmax with rope/learned/sinusoidal/none calls SDPA with is_causal and no mask tensor."""
    calls = []
    real = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(attention_module.F, "scaled_dot_product_attention", spy)
    for pos in ("rope", "learned", "sinusoidal", "none"):
        calls.clear()
        model = build_model(tiny(pos=pos, n_sink_tokens=1 if pos == "rope" else 0))
        model(_ids(model.cfg))
        assert len(calls) == model.cfg.n_layers
        assert all(c.get("is_causal") is True and c.get("attn_mask") is None for c in calls)
    calls.clear()
    model = build_model(tiny(pos="alibi"))
    model(_ids(model.cfg))
    assert len(calls) == 2 and all(c.get("attn_mask") is not None for c in calls)
    calls.clear()
    model = build_model(tiny(attention="sigmoid"))
    model(_ids(model.cfg))
    assert calls == []  # no fused kernel for sigmoid


def test_cache_names_and_shapes() -> None:
    cfg = tiny(n_sink_tokens=2, kv_bias=True, attention="sink_logit")
    model = build_model(cfg).eval()
    probe = model.forward_probe(_ids(cfg))
    H, Hkv, hd, d = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim, cfg.d_model
    assert probe.extra_slots == ("sink_logit", "kv_bias", "sink_token_0", "sink_token_1")
    E = len(probe.extra_slots)
    expected = {"embed": (N, T, d), "norm_final.input": (N, T, d)}
    for i in range(cfg.n_layers):
        expected |= {
            f"blocks.{i}.norm_attn.input": (N, T, d),
            f"blocks.{i}.norm_mlp.input": (N, T, d),
            f"blocks.{i}.attn.q": (N, H, T, hd),
            f"blocks.{i}.attn.k": (N, Hkv, T, hd),
            f"blocks.{i}.attn.v": (N, Hkv, T, hd),
            f"blocks.{i}.attn.pattern": (N, H, T, E + T),
            f"blocks.{i}.attn.z": (N, H, T, hd),
            f"blocks.{i}.mlp.hidden": (N, T, cfg.d_ff),
            f"blocks.{i}.resid_post": (N, T, d),
        }
    assert {k: tuple(v.shape) for k, v in probe.cache.items()} == expected
    assert probe.n_layers == cfg.n_layers and probe.normalised


def test_name_filter_keeps_only_what_is_asked() -> None:
    model = build_model(tiny())
    probe = model.forward_probe(_ids(model.cfg), names=["attn.pattern", "blocks.1.resid_post"])
    assert set(probe.cache) == {
        "blocks.0.attn.pattern",
        "blocks.1.attn.pattern",
        "blocks.1.resid_post",
    }
    assert model.forward_probe(_ids(model.cfg), names=[]).cache == {}


def test_sink_token_rows_are_dropped() -> None:
    cfg = tiny(pos="learned", n_sink_tokens=2)
    model = build_model(cfg)
    ids = _ids(cfg)
    probe = model.forward_probe(ids, names=["embed"])
    expected = model.tok_emb(ids) + model.pos_emb.weight[2 : 2 + T]
    torch.testing.assert_close(probe["embed"], expected)
    # the sink tokens' own columns are visible to every query
    pattern = model.forward_probe(ids, names=["attn.pattern"]).layer(0, "attn.pattern")
    assert (pattern[..., :2] > 0).all()


@pytest.mark.parametrize(
    "attention", ["softmax", "sigmoid_norm", "sink_logit", "softmax_off_by_one", "gated"]
)
def test_normalised_rows_sum_to_one_and_future_is_zero(attention: str) -> None:
    cfg = tiny(attention=attention, kv_bias=True, n_sink_tokens=1)
    pattern = (
        build_model(cfg).forward_probe(_ids(cfg), names=["attn.pattern"]).layer(1, "attn.pattern")
    )
    torch.testing.assert_close(pattern.sum(-1), torch.ones(pattern.shape[:-1]))
    E = pattern.shape[-1] - T
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    assert (pattern[..., E:][..., future] == 0).all()


def _scores(probe, cfg, layer: int) -> torch.Tensor:
    q, k = probe.layer(layer, "attn.q"), probe.layer(layer, "attn.k")
    k = k.repeat_interleave(cfg.n_heads // cfg.n_kv_heads, dim=1)
    return q @ k.transpose(-2, -1) / cfg.head_dim**0.5


@pytest.mark.parametrize("attention", ["sigmoid", "relu", "softmax_off_by_one"])
def test_weights_follow_the_variant_formula(attention: str) -> None:
    cfg = tiny(attention=attention, pos="rope")
    probe = build_model(cfg).forward_probe(_ids(cfg))
    s = _scores(probe, cfg, 1)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    pattern = probe.layer(1, "attn.pattern")
    if attention == "sigmoid":
        expected = torch.sigmoid(s) * causal
    elif attention == "relu":  # query t sees t + 1 keys (Guo et al.'s divisor)
        expected = torch.relu(s) * causal / torch.arange(1, T + 1.0)[:, None]
    else:  # one extra column with logit 0
        with_zero = torch.cat(
            [torch.zeros(*s.shape[:-1], 1), s.masked_fill(~causal, float("-inf"))], -1
        )
        expected = torch.softmax(with_zero, -1)
    torch.testing.assert_close(pattern, expected, rtol=1e-5, atol=1e-6)
    assert probe.normalised == (attention == "softmax_off_by_one")


def test_large_sink_logit_silences_the_head() -> None:
    cfg = tiny(attention="sink_logit")
    model = build_model(cfg)
    with torch.no_grad():
        model.blocks[0].attn.sink_logit[:] = torch.tensor([30.0, 0.0, 0.0, 0.0])
    probe = model.forward_probe(_ids(cfg), names=["blocks.0.attn"])
    pattern, z = probe["blocks.0.attn.pattern"], probe["blocks.0.attn.z"]
    torch.testing.assert_close(
        pattern[:, 0, :, 0], torch.ones(N, T)
    )  # head 0: all mass on the slot
    assert z[:, 0].abs().max() < 1e-6 and z[:, 1].abs().max() > 1e-3


def test_alibi_bias_when_queries_are_zero() -> None:
    """With q = 0 the scores are pure ALiBi bias: softmax over -slope * (t - j)."""
    cfg = tiny(pos="alibi", n_layers=1, n_kv_heads=4)
    model = build_model(cfg)
    with torch.no_grad():
        model.blocks[0].attn.wq.weight.zero_()
    pattern = model.forward_probe(_ids(cfg), names=["attn.pattern"]).layer(0, "attn.pattern")
    slopes = torch.tensor([2.0**-2, 2.0**-4, 2.0**-6, 2.0**-8])
    dist = (torch.arange(T)[:, None] - torch.arange(T)[None]).float()
    logits = (-slopes[:, None, None] * dist).masked_fill(dist < 0, float("-inf"))
    torch.testing.assert_close(pattern, torch.softmax(logits, -1).expand_as(pattern))


@pytest.mark.parametrize("gate", ["per_head", "per_channel"])
def test_gate_multiplies_the_head_output(gate: str) -> None:
    cfg = tiny(attention="gated", gate=gate)
    model = build_model(cfg)
    with torch.no_grad():
        model.blocks[0].attn.gate.weight.zero_()  # sigmoid(0) = 1/2 everywhere
    ids = _ids(cfg)
    gated = model.forward_probe(ids, names=["blocks.0.attn.z"])["blocks.0.attn.z"]
    plain = build_model(tiny())
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if ".gate." not in k})
    ungated = plain.forward_probe(ids, names=["blocks.0.attn.z"])["blocks.0.attn.z"]
    torch.testing.assert_close(gated, 0.5 * ungated)
