"""Attention edge cases the main model tests do not reach: projection biases, the gate's
shape, dropout on both paths (and none in eval), dtypes other than float32, the meta device
standing in for an accelerator, and the error for an unknown variant.

Dropout is checked exactly: with q = k = 0 every visible key gets the same weight w, and with
v = 1 a query's output is w x (kept keys) / (1 - p), so (output x (1 - p) / w) must be a whole
number of keys, and in eval mode it must be all of them.
"""

from __future__ import annotations

import math

import pytest
import torch

from sinklab.model.attention import Attention
from sinklab.model.position import Positions

from .helpers import tiny

CPU = torch.device("cpu")


def _positions(length: int, device: torch.device = CPU) -> Positions:
    return Positions(length=length, n_prefix=0, device=device)


@pytest.mark.parametrize("bias", [True, False])
def test_every_projection_has_a_bias_exactly_when_configured(bias: bool) -> None:
    attn = Attention(tiny(attention="gated", bias=bias))
    for layer in (attn.wq, attn.wk, attn.wv, attn.wo, attn.gate):
        assert (layer.bias is not None) is bias


def _reference_gated(attn: Attention, x: torch.Tensor) -> torch.Tensor:
    """Causal softmax attention with grouped kv heads and a sigmoid gate, from the weights."""
    N, L, _ = x.shape
    H, Hkv, hd = attn.n_heads, attn.n_kv_heads, attn.head_dim
    q = (x @ attn.wq.weight.T).view(N, L, H, hd)
    k = (x @ attn.wk.weight.T).view(N, L, Hkv, hd)
    v = (x @ attn.wv.weight.T).view(N, L, Hkv, hd)
    kv_of = [h * Hkv // H for h in range(H)]  # query head h reads kv head h // (H / Hkv)
    k, v = k[:, :, kv_of], v[:, :, kv_of]
    scores = torch.einsum("nthd,nshd->nhts", q, k) / math.sqrt(hd)
    hidden = torch.triu(torch.ones(L, L, dtype=torch.bool), 1)
    weights = torch.softmax(scores.masked_fill(hidden, float("-inf")), -1)
    z = torch.einsum("nhts,nshd->nthd", weights, v)
    gate = torch.sigmoid(x @ attn.gate.weight.T)
    z = z * (gate[..., None] if gate.shape[-1] == H else gate.view(N, L, H, hd))
    return z.reshape(N, L, H * hd) @ attn.wo.weight.T


@pytest.mark.parametrize(("gate", "width"), [("per_head", 4), ("per_channel", 16)])
def test_gate_has_one_value_per_head_or_per_channel(gate: str, width: int) -> None:
    attn = Attention(tiny(attention="gated", gate=gate, pos="none"))
    assert attn.gate.out_features == width  # 4 heads x head_dim 4
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        out = attn(x, _positions(5))
    torch.testing.assert_close(out, _reference_gated(attn, x), rtol=1e-5, atol=1e-5)


def _flat_attention(attention: str, p: float) -> Attention:
    """q = k = 0 (every visible key weighs the same), v = 1, output projection = identity."""
    attn = Attention(tiny(attention=attention, pos="none", dropout=p, bias=True))
    with torch.no_grad():
        for layer in (attn.wq, attn.wk, attn.wv, attn.wo):
            layer.weight.zero_()
            layer.bias.zero_()
        attn.wv.bias.fill_(1.0)
        attn.wo.weight.copy_(torch.eye(16))
    return attn


# (variant, weight of one visible key for query t, keys counted): sigmoid takes the explicit
# path (sigmoid(0) = 1/2 per key); softmax the fused one without a mask (1/(t+1)); the
# off-by-one slot adds a zero key with a zero value, so the fused path with a mask (1/(t+2)).
CASES = [
    ("sigmoid", lambda t: 0.5),
    ("softmax", lambda t: 1.0 / (t + 1)),
    ("softmax_off_by_one", lambda t: 1.0 / (t + 2)),
]


@pytest.mark.parametrize(("attention", "weight"), CASES)
def test_dropout_drops_whole_weights_in_training_and_nothing_in_eval(attention, weight) -> None:
    p, L = 0.3, 8
    attn = _flat_attention(attention, p)
    x = torch.randn(6, L, 16)
    w = torch.tensor([weight(t) for t in range(L)])[None, :, None]
    visible = torch.arange(1, L + 1, dtype=torch.float32)[None, :, None].expand(6, L, 16)

    attn.eval()
    with torch.no_grad():
        torch.testing.assert_close(attn(x, _positions(L)), w * visible)

    attn.train()
    torch.manual_seed(0)
    with torch.no_grad():
        kept = attn(x, _positions(L)) * (1 - p) / w
    assert torch.allclose(kept, kept.round(), atol=1e-4)  # whole keys, scaled by 1 / (1 - p)
    assert bool((kept.round() >= 0).all()) and bool((kept.round() <= visible).all())
    assert bool((kept.round() < visible).any())  # something was dropped


@pytest.mark.parametrize("attention", ["sigmoid", "softmax_off_by_one"])
def test_explicit_and_masked_paths_keep_the_model_dtype(attention: str) -> None:
    """A float64 model: the weights are computed in float32 and cast back to q's dtype."""
    attn = Attention(tiny(attention=attention, pos="none"))
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        want = attn(x, _positions(5))
        got = attn.double()(x.double(), _positions(5))
    assert got.dtype == torch.float64
    torch.testing.assert_close(got.float(), want, rtol=1e-4, atol=1e-5)


def test_unknown_variant_names_itself() -> None:
    attn = Attention(tiny())
    attn.variant = "cosine"  # ModelConfig rejects it; set behind its back
    with pytest.raises(ValueError, match="cosine"):
        attn.weights(torch.zeros(1, 1, 2, 2))
