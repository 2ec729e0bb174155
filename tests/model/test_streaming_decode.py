"""The one-pass bounded-cache forward equals a token-by-token decode with a rolling KV cache.

`rolling_decode` below is the reference: a real per-token loop that keeps, per layer, the
keys *before* RoPE and rotates them at their current cache positions on every step, as
StreamingLLM does. It shares no masking or position code with `sinklab.model.streaming`;
it only reuses the model's weights, norms and MLPs, and the RoPE / ALiBi / sinusoidal
primitives of `position.py` (the definitions of the encodings themselves).
"""

from __future__ import annotations

import functools
import math

import pytest
import torch
import torch.nn.functional as F

from sinklab.model import build_model
from sinklab.model.config import ATTENTIONS, POSITIONS
from sinklab.model.position import alibi_slopes, apply_rope, rope_cos_sin, sinusoidal_table
from sinklab.model.recorder import NULL_RECORDER
from sinklab.model.streaming import StreamPlan

from .helpers import tiny

T, C = 20, 6
ATOL = 1e-5


class _Cache:
    """One layer's cache: pre-RoPE keys and values of the prefix and of the kept tokens."""

    def __init__(self) -> None:
        self.prefix: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.tokens: list[tuple[int, torch.Tensor, torch.Tensor]] = []  # (stream index, k, v)


def _evict(caches: list[_Cache], cache_len: int | None, n_sinks: int) -> None:
    """Before a token arrives: keep the first n_sinks tokens and the most recent ones so that
    the newcomer makes cache_len."""
    if cache_len is None:
        return
    for cache in caches:
        if len(cache.tokens) > cache_len - 1:
            keep_recent = cache_len - 1 - n_sinks
            recent = cache.tokens[len(cache.tokens) - keep_recent :] if keep_recent else []
            cache.tokens = cache.tokens[:n_sinks] + recent


@functools.cache
def _rope_table(head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    return rope_cos_sin(64, head_dim, theta)  # every position of these tests is below 64


def _step_attention(
    model, layer: int, h: torch.Tensor, cache: _Cache, entry: tuple, shift: bool
) -> torch.Tensor:
    """Append this step's k/v (pre-RoPE) to the cache, attend with the last entry as query."""
    cfg, attn = model.cfg, model.blocks[layer].attn
    H, Hkv, hd = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    S = cfg.n_sink_tokens
    q = attn.wq(h).view(H, hd)
    k = attn.wk(h).view(Hkv, hd)
    v = attn.wv(h).view(Hkv, hd)
    if cfg.qk_norm:
        q, k = attn.q_norm(q), attn.k_norm(k)
    kind, index = entry
    if kind == "prefix":
        cache.prefix.append((k, v))
    else:
        cache.tokens.append((index, k, v))
    # positions: prefix s at s; tokens at S + stream index, or S + their slot in the cache
    key_pos = list(range(len(cache.prefix)))
    key_pos += [S + (i if shift else j) for i, (j, _, _) in enumerate(cache.tokens)]
    keys = [kk for kk, _ in cache.prefix] + [kk for _, kk, _ in cache.tokens]
    vals = [vv for _, vv in cache.prefix] + [vv for _, _, vv in cache.tokens]
    q_pos = key_pos[-1]
    K, V = torch.stack(keys, 1), torch.stack(vals, 1)  # [Hkv, n, hd]
    if cfg.pos == "rope":
        cos, sin = _rope_table(hd, cfg.rope_theta)
        q = apply_rope(q, cos[q_pos], sin[q_pos])
        K = apply_rope(K, cos[key_pos], sin[key_pos])
    rep = H // Hkv
    K, V = K.repeat_interleave(rep, 0), V.repeat_interleave(rep, 0)
    scores = torch.einsum("hd,hnd->hn", q, K) / math.sqrt(hd)
    if cfg.pos == "alibi":
        dist = torch.tensor([q_pos - p for p in key_pos], dtype=torch.float32)
        scores = scores - alibi_slopes(H)[:, None] * dist[None]
    slot_s, slot_v = [], []
    if cfg.attention in ("sink_logit", "softmax_off_by_one"):
        logit = attn.sink_logit if cfg.attention == "sink_logit" else torch.zeros(H)
        slot_s.append(logit[:, None])
        slot_v.append(torch.zeros(H, 1, hd))
    if cfg.kv_bias:
        kb = attn.k_bias.repeat_interleave(rep, 0)
        slot_s.append((q * kb).sum(-1, keepdim=True) / math.sqrt(hd))
        slot_v.append(attn.v_bias.repeat_interleave(rep, 0)[:, None])
    scores = torch.cat([*slot_s, scores], 1)
    V = torch.cat([*slot_v, V], 1)
    if cfg.attention in ("softmax", "gated", "sink_logit", "softmax_off_by_one"):
        w = torch.softmax(scores, -1)
    elif cfg.attention == "sigmoid":
        w = torch.sigmoid(scores)
    elif cfg.attention == "sigmoid_norm":
        w = torch.sigmoid(scores)
        w = w / w.sum(-1, keepdim=True)
    elif cfg.attention == "clipped_softmax":
        gamma = -cfg.clip_alpha / cfg.max_seq_len
        w = ((cfg.clip_zeta - gamma) * torch.softmax(scores, -1) + gamma).clamp(0, 1)
    else:  # relu: divided by the number of keys this step sees (the cache plus the slots)
        w = torch.relu(scores) / scores.shape[-1]
    z = torch.einsum("hn,hnd->hd", w, V)
    if cfg.attention == "gated":
        gate = torch.sigmoid(attn.gate(h))
        z = z * (gate[:, None] if cfg.gate == "per_head" else gate.view(H, hd))
    return attn.wo(z.reshape(H * hd))


def _step_block(model, layer, x, cache, entry, shift) -> torch.Tensor:
    block = model.blocks[layer]
    mlp = (lambda y: block.mlp(y, NULL_RECORDER)) if block.has_mlp else None
    if block.pre_norm:
        x = x + _step_attention(model, layer, block.norm_attn(x), cache, entry, shift)
        return x + mlp(block.norm_mlp(x)) if mlp else x
    x = block.norm_attn(x + _step_attention(model, layer, x, cache, entry, shift))
    return block.norm_mlp(x + mlp(x)) if mlp else x


def _embed(model, x: torch.Tensor, position: int) -> torch.Tensor:
    cfg = model.cfg
    if cfg.pos == "learned":
        return x + model.pos_emb.weight[position]
    if cfg.pos == "sinusoidal":
        return x + sinusoidal_table(position + 1, cfg.d_model)[position]
    return x


@torch.no_grad()
def rolling_decode(
    model, ids: torch.Tensor, cache_len: int | None, n_sinks: int, shift: bool
) -> torch.Tensor:
    """Per-token NLL [T-1] of predicting ids[t+1] from the rolling cache at query t.

    cache_len None: nothing is evicted (the dense condition)."""
    cfg = model.cfg
    S = cfg.n_sink_tokens
    caches = [_Cache() for _ in model.blocks]
    for s in range(S):  # the sink-token prefix: processed first, never evicted
        x = _embed(model, model.sink_tokens[s], s)
        for layer in range(cfg.n_layers):
            x = _step_block(model, layer, x, caches[layer], ("prefix", s), shift)
    nll = []
    for t in range(len(ids)):
        _evict(caches, cache_len, n_sinks)
        position = S + (len(caches[0].tokens) if shift else t)  # the slot it enters
        x = _embed(model, model.tok_emb.weight[ids[t]], position)
        for layer in range(cfg.n_layers):
            x = _step_block(model, layer, x, caches[layer], ("token", t), shift)
        if t + 1 < len(ids):
            logits = model.lm_head(model.norm_final(x))
            nll.append(-F.log_softmax(logits.float(), -1)[ids[t + 1]])
    return torch.stack(nll)


@torch.no_grad()
def masked_pass(model, ids, cache_len, n_sinks, shift, block=0) -> torch.Tensor:
    S = model.cfg.n_sink_tokens
    plan = StreamPlan(
        length=len(ids), cache_len=cache_len, n_sinks=n_sinks, shift=shift, n_prefix=S, block=block
    )
    logits = model.forward_stream(ids[None], plan)[0, :-1].float()
    return -F.log_softmax(logits, -1).gather(1, ids[1:, None])[:, 0]


def _model(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model(tiny(**{"max_seq_len": 32, **kw})).eval()


def _check(model, n_sinks: int, shift: bool, block: int = 0) -> None:
    torch.manual_seed(1)
    ids = torch.randint(0, model.cfg.vocab_size, (T,))
    ref = rolling_decode(model, ids, C, n_sinks, shift)
    got = masked_pass(model, ids, C, n_sinks, shift, block)
    torch.testing.assert_close(got, ref, rtol=0, atol=ATOL)
    # the first C predictions see the whole prefix, so they match the plain forward
    full = F.log_softmax(model(ids[None])[0, :-1].float(), -1).gather(1, ids[1:, None])[:, 0]
    torch.testing.assert_close(got[:C], -full[:C], rtol=0, atol=ATOL)
    # eviction must matter after the cache fills, or the check above proves nothing
    assert (got[C:] + full[C:]).abs().max() > 1e-3


CONDITIONS = [(0, False), (0, True), (2, False), (2, True)]


@pytest.mark.parametrize("pos", POSITIONS)
@pytest.mark.parametrize("attention", ATTENTIONS)
def test_masked_pass_equals_rolling_decode(pos: str, attention: str) -> None:
    model = _model(pos=pos, attention=attention)
    for n_sinks, shift in CONDITIONS:
        _check(model, n_sinks, shift)


@pytest.mark.parametrize("pos", POSITIONS)
@pytest.mark.parametrize(
    "attention", ["softmax", "sink_logit", "sigmoid", "relu", "clipped_softmax"]
)
def test_with_sink_tokens_and_kv_bias(pos: str, attention: str) -> None:
    model = _model(pos=pos, attention=attention, n_sink_tokens=2, kv_bias=True)
    for n_sinks, shift in CONDITIONS:
        _check(model, n_sinks, shift)


@pytest.mark.parametrize(
    "extra",
    [
        dict(n_sink_tokens=1),
        dict(kv_bias=True, attention="softmax_off_by_one"),
        dict(norm_position="post", norm="layernorm", mlp="gelu"),
        dict(qk_norm=True, attention="gated", gate="per_channel"),
        dict(mlp="none", n_kv_heads=4),
    ],
)
def test_other_architectures(extra: dict) -> None:
    model = _model(pos="rope", **extra)
    for n_sinks, shift in [(1, True), (3, False), (5, True)]:
        _check(model, n_sinks, shift)


@pytest.mark.parametrize("block", [1, 4, 7, 32])
def test_query_block_size_does_not_change_the_result(block: int) -> None:
    _check(_model(pos="alibi", n_sink_tokens=1), 2, True, block)
    _check(_model(pos="rope", kv_bias=True), 1, True, block)


@pytest.mark.parametrize("pos", ["rope", "alibi", "sinusoidal", "none"])
def test_dense_stream_past_max_seq_len_equals_decode_without_eviction(pos: str) -> None:
    model = _model(pos=pos, max_seq_len=8)
    torch.manual_seed(1)
    ids = torch.randint(0, model.cfg.vocab_size, (T,))
    ref = rolling_decode(model, ids, None, 0, False)
    logits = model.forward_stream(ids[None])[0, :-1].float()
    got = -F.log_softmax(logits, -1).gather(1, ids[1:, None])[:, 0]
    torch.testing.assert_close(got, ref, rtol=0, atol=ATOL)


def test_shift_is_what_differs() -> None:
    """With RoPE the shifted and unshifted conditions differ once the cache is full, and both
    equal the plain forward before it is."""
    model = _model(pos="rope")
    torch.manual_seed(1)
    ids = torch.randint(0, model.cfg.vocab_size, (T,))
    a, b = masked_pass(model, ids, C, 2, False), masked_pass(model, ids, C, 2, True)
    torch.testing.assert_close(a[:C], b[:C], rtol=0, atol=ATOL)
    assert (a[C:] - b[C:]).abs().max() > 1e-3
