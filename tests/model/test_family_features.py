"""The options imported families need, checked against hand-written formulas.

The converter tests (tests/model/convert/) compare whole models with transformers; these pin
each option's own behaviour, so a failure there points at one place.
"""

from __future__ import annotations

import math

import pytest
import torch

from sinklab.model import build_model
from sinklab.model.layers import RMSNorm
from sinklab.model.recorder import NULL_RECORDER

from .helpers import tiny

IDS = torch.randint(0, 32, (2, 12), generator=torch.Generator().manual_seed(0))


def _perturbed(**overrides):
    torch.manual_seed(0)
    model = build_model(tiny(**overrides)).eval()
    with torch.no_grad():  # norm gains and biases start at 1 / 0: make them matter
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.3)
    return model


def test_norm_offset_applies_the_gain_as_one_plus_w() -> None:
    x = torch.randn(3, 8)
    w = torch.randn(8)
    gemma, llama = RMSNorm(8, 1e-6, offset=1.0), RMSNorm(8, 1e-6)
    with torch.no_grad():
        gemma.weight.copy_(w)
        llama.weight.copy_(1.0 + w)
    torch.testing.assert_close(gemma(x), llama(x), rtol=0, atol=1e-6)
    fresh = build_model(tiny(norm_offset=1.0))  # starts at an effective gain of one
    assert torch.all(fresh.blocks[0].norm_attn.weight == 0.0)


def test_parallel_block_adds_both_sublayers_to_the_same_input() -> None:
    model = _perturbed(parallel_block=True, norm="layernorm", bias=True)
    block = model.blocks[0]
    x = torch.randn(2, 12, 16)
    full, _ = model.layer_positions(12, x.device)
    with torch.no_grad():
        expected = (
            x + block.attn(block.norm_attn(x), full) + block.mlp(block.norm_mlp(x), NULL_RECORDER)
        )
        got = block(x, full)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("placement", ["sandwich", "reordered"])
def test_sandwich_and_reordered_norms_sit_where_the_formula_says(placement: str) -> None:
    model = _perturbed(norm_position=placement)
    block = model.blocks[0]
    x = torch.randn(2, 12, 16)
    full, _ = model.layer_positions(12, x.device)
    n_in = (lambda n, t: n(t)) if placement == "sandwich" else (lambda n, t: t)
    with torch.no_grad():
        h = x + block.norm_attn_out(block.attn(n_in(getattr(block, "norm_attn", None), x), full))
        expected = h + block.norm_mlp_out(
            block.mlp(n_in(getattr(block, "norm_mlp", None), h), NULL_RECORDER)
        )
        got = block(x, full)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    names = {
        n.split(".", 2)[2] for n, _ in model.named_parameters() if n.startswith("blocks.0.norm")
    }
    if placement == "sandwich":
        assert names == {
            "norm_attn.weight",
            "norm_attn_out.weight",
            "norm_mlp.weight",
            "norm_mlp_out.weight",
        }
    else:
        assert names == {"norm_attn_out.weight", "norm_mlp_out.weight"}


@pytest.mark.parametrize("window", [1, 3, 5])
def test_a_sliding_window_hides_keys_at_distance_window_or_more(window: int) -> None:
    model = _perturbed(sliding_window=window)
    names = [f"blocks.{i}.attn.pattern" for i in range(2)]
    with torch.no_grad():
        probe = model.forward_probe(IDS, names=names)
        fused = model(IDS)  # the mask path of SDPA, not the explicit one
    torch.testing.assert_close(probe.logits, fused, rtol=0, atol=1e-5)
    t = torch.arange(12)
    hidden = (t[:, None] - t[None, :] >= window) | (t[None, :] > t[:, None])
    for name in names:
        pattern = probe.cache[name]
        assert torch.all(pattern[..., hidden] == 0)
        torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))
        assert torch.all(pattern[..., ~hidden] > 0)


def test_layer_types_choose_which_layers_slide_and_their_rope_base() -> None:
    base = dict(sliding_window=3, layer_types=["full", "sliding"])
    model = _perturbed(**base)
    with torch.no_grad():
        probe = model.forward_probe(IDS, names=["blocks.0.attn.pattern", "blocks.1.attn.pattern"])
        assert probe.cache["blocks.0.attn.pattern"][..., 11, 0].min() > 0  # full: sees token 0
        assert torch.all(probe.cache["blocks.1.attn.pattern"][..., 11, :9] == 0)
        same = _perturbed(**base, rope_local_theta=10000.0)  # = rope_theta: no change
        torch.testing.assert_close(same(IDS), model(IDS), rtol=0, atol=0)
        other = _perturbed(**base, rope_local_theta=10.0)
        assert not torch.allclose(other(IDS), model(IDS), atol=1e-4)
        first_only = _perturbed(**base, rope_local_theta=10.0, n_layers=2)
        probe_other = first_only.forward_probe(IDS, names=["blocks.0.attn.pattern"])
        # layer 0 is full: the local base does not reach it
        torch.testing.assert_close(
            probe_other.cache["blocks.0.attn.pattern"], probe.cache["blocks.0.attn.pattern"]
        )


def test_a_window_as_long_as_the_sequence_changes_nothing() -> None:
    with torch.no_grad():
        torch.testing.assert_close(_perturbed(sliding_window=12)(IDS), _perturbed()(IDS))


def test_softcaps_bound_scores_and_logits() -> None:
    capped = _perturbed(attn_softcap=0.5, logit_softcap=2.0)
    plain = _perturbed()
    with torch.no_grad():
        logits = capped(IDS)
        assert logits.abs().max() < 2.0
        torch.testing.assert_close(capped.forward_probe(IDS, names=[]).logits, logits)
        attn = capped.blocks[0].attn
        scores = torch.tensor([-100.0, 0.0, 0.3, 100.0])
        torch.testing.assert_close(attn.cap(scores), 0.5 * torch.tanh(scores / 0.5))
        assert not torch.allclose(plain(IDS), logits)


def test_attn_scale_replaces_one_over_sqrt_head_dim() -> None:
    model = _perturbed(attn_scale=0.125)
    assert model.blocks[0].attn.scale == 0.125
    assert _perturbed().blocks[0].attn.scale == 1 / math.sqrt(4)


def test_qkv_bias_alone_and_head_dim_apart_from_d_model() -> None:
    model = build_model(tiny(qkv_bias=True, head_dim=8))  # 4 heads x 8 = 32 != d_model 16
    attn = model.blocks[0].attn
    assert attn.wq.bias is not None and attn.wk.bias is not None and attn.wv.bias is not None
    assert attn.wo.bias is None and model.blocks[0].mlp.w_up.bias is None
    assert tuple(attn.wq.weight.shape) == (32, 16) and tuple(attn.wo.weight.shape) == (16, 32)
    assert model(IDS).shape == (2, 12, 32)


def test_qk_norm_scope_projection_normalises_the_whole_projection() -> None:
    model = _perturbed(qk_norm=True, qk_norm_scope="projection")
    attn = model.blocks[0].attn
    assert tuple(attn.q_norm.weight.shape) == (16,) and tuple(attn.k_norm.weight.shape) == (8,)
    x = torch.randn(1, 5, 16)
    q, k, _ = attn.project(x)
    with torch.no_grad():
        q_all = attn.wq(x)
        expected = (
            q_all * torch.rsqrt(q_all.pow(2).mean(-1, keepdim=True) + 1e-5) * attn.q_norm.weight
        )
    torch.testing.assert_close(q, expected.view(1, 5, 4, 4), rtol=0, atol=1e-6)


def test_scaled_embeddings_and_tanh_gelu() -> None:
    model = _perturbed(scale_embeddings=True, mlp="gelu", gelu_approx="tanh")
    with torch.no_grad():
        probe = model.forward_probe(IDS, names=["embed"])
    torch.testing.assert_close(probe.cache["embed"], model.tok_emb(IDS) * 4.0)
    x = torch.linspace(-4, 4, 50)
    expected = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    torch.testing.assert_close(model.blocks[0].mlp.act(x), expected, rtol=0, atol=1e-6)


def test_every_option_at_once_trains() -> None:
    model = build_model(
        tiny(
            norm_position="sandwich",
            norm_offset=1.0,
            qk_norm=True,
            mlp="geglu",
            gelu_approx="tanh",
            qkv_bias=True,
            attn_softcap=20.0,
            logit_softcap=10.0,
            scale_embeddings=True,
            sliding_window=4,
            layer_types=["sliding", "full"],
            rope_local_theta=100.0,
            head_dim=8,
        )
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = []
    for _ in range(8):
        logits = model(IDS[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 32), IDS[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
