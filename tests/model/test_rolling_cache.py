"""The chunked rolling-KV-cache path gives the masked pass's NLL (and the decode's), with caches
that never grow past C.

Two references: the one-pass masked plan (`StreamPlan`, itself proved against a
token-by-token decode in test_streaming_decode.py) and that decode (`rolling_decode`) itself.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sinklab.model import build_model
from sinklab.model.config import POSITIONS
from sinklab.model.rolling_cache import (
    RollingCache,
    stream_chunks,
    stream_hidden,
    stream_token_nll,
)
from sinklab.model.streaming import StreamPlan

from .helpers import tiny
from .test_streaming_decode import rolling_decode

T, C = 37, 8
ATOL = 1e-5
CONDITIONS = [(0, False), (0, True), (1, False), (1, True), (4, False), (4, True)]


def _model(seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model(tiny(**{"max_seq_len": 64, **kw})).eval()


def _ids(model, n: int = T) -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randint(0, model.cfg.vocab_size, (n,))


@torch.no_grad()
def _masked_nll(model, ids, cache_len, n_sinks, shift) -> torch.Tensor:
    plan = StreamPlan(len(ids), cache_len, n_sinks, shift, n_prefix=model.cfg.n_sink_tokens)
    logits = model.forward_stream(ids[None], plan)[0, :-1].float()
    return -F.log_softmax(logits, -1).gather(1, ids[1:, None])[:, 0]


def _check(model, ids, n_sinks, shift, chunk, cache_len=C) -> torch.Tensor:
    ref = _masked_nll(model, ids, cache_len, n_sinks, shift)
    got = stream_token_nll(model, ids, cache_len, n_sinks, shift, chunk)
    torch.testing.assert_close(got, ref, rtol=0, atol=ATOL)
    return got


@pytest.mark.parametrize("pos", POSITIONS)
@pytest.mark.parametrize("chunk", [3, 8, 64])  # 3 and 8 do not divide T = 37; 3 < k = 4
def test_rolling_path_equals_masked_pass(pos: str, chunk: int) -> None:
    model = _model(pos=pos)
    ids = _ids(model)
    for n_sinks, shift in CONDITIONS:
        _check(model, ids, n_sinks, shift, chunk)


@pytest.mark.parametrize("pos", ["rope", "alibi", "learned"])
@pytest.mark.parametrize("attention", ["sink_logit", "relu", "sigmoid", "gated"])
def test_with_sink_tokens_kv_bias_and_variants(pos: str, attention: str) -> None:
    model = _model(pos=pos, attention=attention, n_sink_tokens=2, kv_bias=True)
    ids = _ids(model)
    for n_sinks, shift in CONDITIONS:
        _check(model, ids, n_sinks, shift, chunk=6)


@pytest.mark.parametrize(
    "extra",
    [
        dict(n_kv_heads=1, qk_norm=True),
        dict(norm_position="post", norm="layernorm", mlp="gelu"),
        dict(
            n_heads=2,
            rotary_pct=0.5,
            rope_scaling={"type": "dynamic", "factor": 2.0},
            max_seq_len=16,
        ),
        dict(rope_scaling={"type": "linear", "factor": 4.0}),
    ],
)
def test_other_architectures(extra: dict) -> None:
    model = _model(pos="rope", **extra)
    ids = _ids(model)
    for n_sinks, shift in [(0, True), (4, False), (4, True)]:
        _check(model, ids, n_sinks, shift, chunk=7)


@pytest.mark.parametrize("pos", ["rope", "alibi", "sinusoidal"])
def test_rolling_path_equals_a_token_by_token_decode(pos: str) -> None:
    """Against the independent per-token reference, with a sink-token prefix."""
    model = _model(pos=pos, n_sink_tokens=1, max_seq_len=32)
    ids = _ids(model, 40)
    for n_sinks, shift in CONDITIONS:
        ref = rolling_decode(model, ids, C, n_sinks, shift)
        got = stream_token_nll(model, ids, C, n_sinks, shift, chunk=9)
        torch.testing.assert_close(got, ref, rtol=0, atol=ATOL)


def test_rope_stream_longer_than_max_seq_len() -> None:
    model = _model(pos="rope", max_seq_len=16)
    ids = _ids(model, 150)
    for n_sinks, shift in CONDITIONS:
        got = _check(model, ids, n_sinks, shift, chunk=11)
        # the cache conditions really differ after the cache fills
        assert got.isfinite().all()
    window = stream_token_nll(model, ids, C, 0, True, 11)
    sinks = stream_token_nll(model, ids, C, 4, True, 11)
    assert (window[C:] - sinks[C:]).abs().max() > 1e-3
    torch.testing.assert_close(window[: C - 1], sinks[: C - 1], rtol=0, atol=ATOL)


def test_learned_positions_without_shift_refuse_past_the_table() -> None:
    model = _model(pos="learned", max_seq_len=16)
    ids = _ids(model, 30)
    with pytest.raises(ValueError, match="past the learned table"):
        stream_token_nll(model, ids, C, 1, False, chunk=8)
    _check(model, ids, 1, True, chunk=8)  # with shift every position stays below C


def test_hidden_states_match_forward_stream_and_caches_stay_bounded() -> None:
    model = _model(pos="rope", n_sink_tokens=1)
    ids = _ids(model, 50)
    plan = StreamPlan(50, C, 2, True, n_prefix=1)
    ref = model.forward_stream(ids[None], plan, hidden=True)[0]
    torch.testing.assert_close(stream_hidden(model, ids, C, 2, True, 16), ref, rtol=0, atol=ATOL)
    # the caches after every chunk: the prefix, k sinks and W = C - k - 1 recent, never more
    seen = []
    original = RollingCache._keep

    def spy(self, cache, k, v):
        original(self, cache, k, v)
        seen.append((cache.prefix_k.shape[2], cache.sink_k.shape[2], cache.recent_k.shape[2]))

    RollingCache._keep = spy
    try:
        for _ in stream_chunks(model, ids, C, 2, True, 16):
            pass
    finally:
        RollingCache._keep = original
    assert seen[-1] == (1, 2, C - 2 - 1)
    assert max(n for _, _, n in seen) == C - 2 - 1


def test_a_batch_of_streams_equals_each_alone() -> None:
    model = _model(pos="alibi")
    ids = torch.stack([_ids(model, 30), _ids(model, 30).flip(0)])
    both = torch.cat([h for _, h in stream_chunks(model, ids, C, 1, True, 7)], dim=1)
    for row in range(2):
        alone = stream_hidden(model, ids[row], C, 1, True, 7)
        torch.testing.assert_close(both[row], alone, rtol=0, atol=ATOL)


def test_bad_arguments() -> None:
    model = _model()
    with pytest.raises(ValueError, match="need 0 <= n_sinks < cache_len, got 8, 8"):
        stream_token_nll(model, _ids(model), 8, 8, True)
    with pytest.raises(ValueError, match="chunk must be >= 1, got 0"):
        stream_token_nll(model, _ids(model), 8, 1, True, chunk=0)


GEMMA_LIKE = dict(
    sliding_window=5,
    layer_types=["sliding", "full"],
    rope_local_theta=100.0,
    attn_softcap=2.0,
    logit_softcap=3.0,
    scale_embeddings=True,
    norm_position="sandwich",
    norm_offset=1.0,
    n_sink_tokens=1,
)


@pytest.mark.parametrize("pos", ["rope", "alibi", "learned"])
def test_sliding_layers_softcaps_and_sandwich_norms(pos: str) -> None:
    extra = GEMMA_LIKE if pos == "rope" else {**GEMMA_LIKE, "rope_local_theta": None}
    model = _model(pos=pos, **extra)
    ids = _ids(model, 40)
    for n_sinks, shift in CONDITIONS:
        _check(model, ids, n_sinks, shift, chunk=6)


@pytest.mark.parametrize("layer_types", [None, ["sliding", "full"]])
def test_sliding_window_inside_the_cache_is_the_plain_forward(layer_types) -> None:
    """With every layer sliding (window 5 < C - k), eviction never hides a key the window
    shows, so the window condition is the model's plain forward (the lead's sliding mask); with
    a full layer it is not, unless the cache holds the whole stream."""
    model = _model(pos="rope", sliding_window=5, layer_types=layer_types, rope_local_theta=100.0)
    ids = _ids(model, 40)
    logits = model(ids[None])[0, :-1].float()
    plain = F.cross_entropy(logits, ids[1:], reduction="none")
    whole = stream_token_nll(model, ids, 40, 0, False, chunk=7)
    torch.testing.assert_close(whole, plain, rtol=0, atol=ATOL)
    window = stream_token_nll(model, ids, C, 0, False, chunk=7)
    if layer_types is None:
        torch.testing.assert_close(window, plain, rtol=0, atol=ATOL)
        masked = _masked_nll(model, ids, C, 0, False)
        torch.testing.assert_close(masked, plain, rtol=0, atol=ATOL)
    else:
        assert (window[C:] - plain[C:]).abs().max() > 1e-3


def test_logits_in_slices_smaller_than_a_chunk(monkeypatch) -> None:
    from sinklab.model import rolling_cache

    model = _model(pos="rope")
    ids = _ids(model)
    monkeypatch.setattr(rolling_cache, "LOGIT_FLOATS", 3 * model.cfg.vocab_size)  # 3 rows
    _check(model, ids, 1, True, chunk=8)
