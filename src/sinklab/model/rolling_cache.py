"""A real rolling KV cache for long streams: memory O(C), whatever the stream length T.

`StreamPlan` (`streaming.py`) reproduces a StreamingLLM decode in one masked pass, but it
holds every token's hidden state in every layer, so its memory grows with T (SmolLM2-135M at
T = 2048, C = 256: about 6.4 GB). Here the stream goes through the model in chunks of B
tokens and each layer keeps only what a decode keeps: the keys and values (before any
position encoding) of the sink-token prefix, of the first k stream tokens ("sinks") and of
the C - k - 1 most recent tokens before the chunk. A chunk's queries see those plus the
chunk itself under the same rule as the masked pass: query t sees key j <= t iff j < k or
t - j < C - k; the extra slots (logit slot, kv_bias) and the prefix always. So each chunk
costs O(B (C + B)) and the whole stream O(T (C + B)), as the masked pass, in O(C + B)
memory per layer.

It plugs into the model through the `Positions.stream` hook: `Attention.forward` hands the
layer's un-rotated q/k/v to `RollingCache.attend`, which attends over the cache, then adds
the chunk to it; the blocks, norms and MLPs are the model's own.

Positions, as in the decode (`streaming.py` explains why these are the decode's):

- shift (StreamingLLM's `enable_pos_shift`): keys sit at their cache slots. RoPE scores
  depend only on the distance, so each chunk rotates its recent keys and queries at
  positions counted from the chunk's band start (all below S + C + B), and the sink /
  prefix columns with the query at its slot P(t) = S + min(t, C - 1). No angle ever grows
  with T, as in a real decode; the masked pass rotates recent keys at their stream
  positions instead, which is the same score up to fp32 rounding of the angles (equal
  within 1e-5 on the test streams; on 20k-token streams the rolling path is the exact one).
- no shift: every token keeps its stream position S + t (RoPE angles and ALiBi distances
  are taken there).
- learned / sinusoidal: token t enters at P(t) (shift) or S + t (no shift), once.

Sliding-window layers (`Positions.window` of the model's sliding layers): a key is visible
only while the true token distance (S + t) - p is below `model.sliding_window` (p the key's
stream position, prefix included), on top of the cache rule; their RoPE base is
`model.rope_local_theta` when set, as in `Rope.positions`.

Dynamic RoPE scaling takes its base from the whole stream's length S + T, as the masked
pass does (one table for the stream), so both paths give the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from sinklab.model.position import Positions, apply_rope, rotary_dim
from sinklab.model.streaming import (
    _distance_bias,
    _slots,
    _with_slot_bias,
    in_window,
    require_causal,
)

if TYPE_CHECKING:
    from sinklab.model.attention import Attention
    from sinklab.model.transformer import Transformer

DEFAULT_CHUNK = 128
LOGIT_FLOATS = 1 << 24  # logits formed at once by `stream_token_nll` (64 MB in fp32)


@dataclass
class _LayerCache:
    """One layer's kept keys [N, Hkv, n, hd] (un-rotated) and values [N, Hkv, n, hd]."""

    prefix_k: torch.Tensor | None = None
    prefix_v: torch.Tensor | None = None
    sink_k: torch.Tensor | None = None  # stream tokens 0 .. n_sinks_seen - 1
    sink_v: torch.Tensor | None = None
    recent_k: torch.Tensor | None = None  # stream tokens recent_start .. t0 - 1
    recent_v: torch.Tensor | None = None


@dataclass
class _Rope:
    """RoPE frequencies of one base, for cos/sin at any position without a table of T rows.
    Every position of one chunk is the same in all layers of that base, so the cos/sin of
    each set (`name`) is computed once per chunk (`memo`, cleared by `RollingCache`)."""

    inv_freq: torch.Tensor  # [rotary dim / 2]
    memo: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def at(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin [len, rotary dim]: the rows `rope_cos_sin` has at these positions."""
        angles = torch.outer(positions.to(torch.float32), self.inv_freq)
        angles = torch.cat((angles, angles), dim=-1)
        return angles.cos(), angles.sin()

    def rotate(self, x: torch.Tensor, positions: torch.Tensor, name: str) -> torch.Tensor:
        """x [N, heads, n, hd] rotated at `positions` [n], the chunk's position set `name`."""
        if name not in self.memo:
            self.memo[name] = self.at(positions)
        return apply_rope(x, *self.memo[name])


@dataclass
class RollingCache:
    """The per-layer rolling caches of one stream, fed one chunk at a time (`attend` is the
    `Positions.stream` hook). `stream_len` is only read for dynamic RoPE scaling."""

    model: Transformer
    cache_len: int
    n_sinks: int = 0
    shift: bool = False
    stream_len: int = 0
    t0: int = 0  # stream index of the current chunk's first token
    in_prefix: bool = False  # the current call runs the sink-token prefix
    _layers: dict[int, tuple[int, _LayerCache]] = field(default_factory=dict, repr=False)
    _ropes: dict[int, _Rope | None] = field(default_factory=dict, repr=False)
    _bases: dict[float, _Rope] = field(default_factory=dict, repr=False)
    _biases: dict[tuple, torch.Tensor] = field(default_factory=dict, repr=False)
    _memo_key: tuple[bool, int] = (False, -1)  # (in_prefix, t0) the memos were built for

    def __post_init__(self) -> None:
        if not 0 <= self.n_sinks < self.cache_len:
            raise ValueError(f"need 0 <= n_sinks < cache_len, got {self.n_sinks}, {self.cache_len}")
        for i, block in enumerate(self.model.blocks):
            self._layers[id(block.attn)] = (i, _LayerCache())

    @property
    def n_prefix(self) -> int:
        return self.model.cfg.n_sink_tokens

    @property
    def recent_len(self) -> int:
        """W: recent tokens kept before a chunk (the C - k - 1 that, with the sinks and the
        chunk's first token, make C)."""
        return self.cache_len - self.n_sinks - 1

    def query_positions(self, t: torch.Tensor) -> torch.Tensor:
        """P(t): where token t sits as a query, and where it enters (learned, sinusoidal)."""
        return self.n_prefix + (t.clamp(max=self.cache_len - 1) if self.shift else t)

    # -- the hook ------------------------------------------------------------------------------

    def attend(
        self, attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: Positions
    ) -> torch.Tensor:
        """z [N, H, L, hd] from un-rotated q [N, L, H, hd], k [N, L, Hkv, hd], v [N, Hkv, L, hd],
        then the chunk's keys and values join the layer's cache."""
        layer, cache = self._layers[id(attn)]
        if self._memo_key != (self.in_prefix, self.t0):  # a new chunk: new positions and masks
            self._memo_key = (self.in_prefix, self.t0)
            self._biases.clear()
            for rope in self._bases.values():
                rope.memo.clear()
        k = k.transpose(1, 2)  # [N, Hkv, L, hd], as v
        if self.in_prefix:
            z = self._prefix_rows(attn, layer, q.transpose(1, 2), k, v, pos)
            cache.prefix_k, cache.prefix_v = k, v
            return z
        z = self._token_rows(attn, layer, cache, q.transpose(1, 2), k, v, pos)
        self._keep(cache, k, v)
        return z

    def _keep(self, cache: _LayerCache, k: torch.Tensor, v: torch.Tensor) -> None:
        """Add the chunk: sinks are the first k stream tokens, recent the last W before the
        next chunk."""
        L, ks, W = k.shape[2], self.n_sinks, self.recent_len
        have = 0 if cache.sink_k is None else cache.sink_k.shape[2]
        if have < ks and self.t0 < ks:
            take = min(ks, self.t0 + L) - self.t0
            cache.sink_k = _cat(cache.sink_k, k[:, :, :take])
            cache.sink_v = _cat(cache.sink_v, v[:, :, :take])
        recent_k, recent_v = _cat(cache.recent_k, k), _cat(cache.recent_v, v)
        start = max(0, recent_k.shape[2] - W)
        # clone: a view would pin the whole chunk (and, chained, every earlier one)
        cache.recent_k = recent_k[:, :, start:].clone()
        cache.recent_v = recent_v[:, :, start:].clone()

    # -- rows ----------------------------------------------------------------------------------

    def _prefix_rows(
        self,
        attn: Attention,
        layer: int,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        pos: Positions,
    ) -> torch.Tensor:
        """The S sink-token positions: causal among themselves, at positions 0 .. S-1."""
        S = q.shape[2]
        idx = torch.arange(S, device=q.device)
        rope = self._rope(layer, q.device)
        if rope is not None:
            q, k = rope.rotate(q, idx, "prefix"), rope.rotate(k, idx, "prefix")
        slots = _slots(attn, q.shape[0], q.dtype)
        distance = (idx[:, None] - idx[None, :]).float()
        visible = (distance >= 0) & in_window(distance, pos.window)
        bias = _distance_bias(distance, visible, pos.slopes)
        if slots is not None:
            bias = _with_slot_bias(slots[2][:, None], bias)
        return _attend(attn, q, slots, [(q, k, v)], bias)

    def _token_rows(
        self,
        attn: Attention,
        layer: int,
        cache: _LayerCache,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        pos: Positions,
    ) -> torch.Tensor:
        """Rows of the chunk's L tokens t0 .. t0+L-1 against [slots][prefix][sinks][band],
        the band being the recent keys before the chunk followed by the chunk's own."""
        S, ks, t0 = self.n_prefix, self.n_sinks, self.t0
        L, device, slopes = q.shape[2], q.device, pos.slopes
        t = t0 + torch.arange(L, device=device)  # query stream indices
        # global columns: the prefix, then the sinks (those cached, plus any in this chunk)
        sink_k, sink_v = cache.sink_k, cache.sink_v
        if t0 < ks:
            take = min(ks, t0 + L) - t0
            sink_k, sink_v = _cat(sink_k, k[:, :, :take]), _cat(sink_v, v[:, :, :take])
        n_sinks = 0 if sink_k is None else sink_k.shape[2]
        glob_k = _cat(cache.prefix_k, sink_k)
        glob_v = _cat(cache.prefix_v, sink_v)
        band_k, band_v = _cat(cache.recent_k, k), _cat(cache.recent_v, v)
        band_start = t0 + L - band_k.shape[2]  # stream index of the band's first key
        j = band_start + torch.arange(band_k.shape[2], device=device)
        p_glob = torch.cat(
            [torch.arange(S, device=device), S + torch.arange(n_sinks, device=device)]
        )
        p_query = self.query_positions(t)
        # RoPE: global columns with the query at P(t); the band relative to its start under
        # shift (slots), at stream positions without
        q_glob, q_band = q, q
        rope = self._rope(layer, device)
        if rope is not None:
            q_glob = rope.rotate(q, p_query, "query")
            if glob_k is not None:
                glob_k = rope.rotate(glob_k, p_glob, "global keys")
            band_base = band_start if self.shift else -S
            q_band = rope.rotate(q, t - band_base, "band query")
            band_k = rope.rotate(band_k, j - band_base, "band keys")
        groups = [(q_band, band_k, band_v)]
        if glob_k is not None:
            groups.insert(0, (q_glob, glob_k, glob_v))
        slots = _slots(attn, q.shape[0], q.dtype)
        key = ("tokens", pos.window, slopes is not None)
        if key not in self._biases:
            self._biases[key] = self._token_bias(t, j, p_glob, n_sinks, pos)
        bias = self._biases[key]
        if slots is not None:
            bias = _with_slot_bias(slots[2][:, None], bias)
        return _attend(attn, q_glob, slots, groups, bias)

    def _token_bias(
        self,
        t: torch.Tensor,
        j: torch.Tensor,
        p_glob: torch.Tensor,
        n_sinks: int,
        pos: Positions,
    ) -> torch.Tensor:
        """[H or 1, L, G + band] of the chunk's rows: 0 (-slope x distance under ALiBi) where
        the cache shows a key, -inf elsewhere; the same in every layer of one window."""
        S, ks, C, device, slopes = self.n_prefix, self.n_sinks, self.cache_len, t.device, pos.slopes
        L, p_query = len(t), self.query_positions(t)
        # visibility and ALiBi distances (true stream distances for the sliding window)
        glob_true = (S + t)[:, None] - p_glob[None]
        glob_seen = torch.cat(
            [
                torch.ones(L, S, dtype=torch.bool, device=device),
                torch.arange(n_sinks, device=device)[None] <= t[:, None],
            ],
            dim=1,
        )
        glob_visible = glob_seen & in_window(glob_true, pos.window)
        glob_bias = _distance_bias((p_query[:, None] - p_glob[None]).float(), glob_visible, slopes)
        d = t[:, None] - j[None]
        recent = (d >= 0) & (d < C - ks) & (j >= ks)[None] & in_window(d, pos.window)
        return torch.cat([glob_bias, _distance_bias(d.float(), recent, slopes)], dim=-1)

    # -- per layer -----------------------------------------------------------------------------

    def _rope(self, layer: int, device: torch.device) -> _Rope | None:
        """The layer's RoPE frequencies (None without RoPE): `Rope.tables`' arithmetic, with the
        base of sliding layers (`rope_local_theta`) and the stream-length base of dynamic
        scaling."""
        if layer in self._ropes:
            return self._ropes[layer]
        cfg = self.model.cfg
        rope = None
        if self.model.position.enters == "rotation":
            dim = rotary_dim(cfg)
            theta: float | torch.Tensor = cfg.rope_theta
            if self.model.blocks[layer].sliding and cfg.rope_local_theta is not None:
                theta = cfg.rope_local_theta
            divide = 1.0
            if cfg.rope_scaling is not None:
                length = self.n_prefix + self.stream_len
                theta = cfg.rope_scaling.theta(theta, length, cfg.max_seq_len, dim)
                divide = cfg.rope_scaling.divide
            exponent = torch.arange(0, dim, 2, dtype=torch.int64, device=device).float() / dim
            inv_freq = 1.0 / (theta**exponent)
            if divide != 1.0:
                inv_freq = inv_freq / divide
            rope = self._bases.setdefault(float(theta), _Rope(inv_freq.to(device)))
        self._ropes[layer] = rope
        return rope


def _cat(a: torch.Tensor | None, b: torch.Tensor | None) -> torch.Tensor | None:
    """Concatenate along the key axis (dim 2), either side possibly absent."""
    if a is None or a.shape[2] == 0:
        return b
    if b is None or b.shape[2] == 0:
        return a
    return torch.cat([a, b], dim=2)


def _attend(
    attn: Attention,
    q_slots: torch.Tensor,
    slots: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
    groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    bias: torch.Tensor,
) -> torch.Tensor:
    """z [N, H, L, hd] over [slots][group 0][group 1]..: each group a query [N, H, L, hd] and
    its keys and values [N, Hkv, n, hd]. Scaled (and soft-capped) scores + bias (-inf where
    hidden) -> the variant's weights -> weighted values, the masked pass's arithmetic
    (`StreamPlan._combine`).

    Without slots the query heads of one kv head go as one matrix [rep L, hd] against that
    head's keys (no key or value is repeated rep times); the slots, whose keys and values are
    per query head, take the repeated layout."""
    N, H, L, hd = groups[0][0].shape
    Hkv, dtype = attn.n_kv_heads, q_slots.dtype
    rep = H // Hkv
    if slots is None:
        scores = [
            (q.reshape(N, Hkv, rep * L, hd) @ k.transpose(-1, -2)).view(N, H, L, -1)
            for q, k, _ in groups
        ]
        s = attn.cap(torch.cat(scores, dim=-1).float() * attn.scale) + bias
        w = attn.weights(s).to(dtype)
        v = torch.cat([v for *_, v in groups], dim=-2)
        return (w.view(N, Hkv, rep * L, -1) @ v).view(N, H, L, hd)
    scores = [q_slots @ slots[0].transpose(-1, -2)]
    values = [slots[1]]
    for q, k, v in groups:
        scores.append(q @ k.repeat_interleave(rep, dim=1).transpose(-1, -2))
        values.append(v.repeat_interleave(rep, dim=1))
    s = attn.cap(torch.cat(scores, dim=-1).float() * attn.scale) + bias
    w = attn.weights(s).to(dtype)
    return w @ torch.cat(values, dim=-2)


# -- the driver -----------------------------------------------------------------------------------


@torch.no_grad()
def stream_chunks(
    model: Transformer,
    ids: torch.Tensor,
    cache_len: int,
    n_sinks: int = 0,
    shift: bool = False,
    chunk: int = DEFAULT_CHUNK,
) -> Iterator[tuple[int, torch.Tensor]]:
    """(t0, final-normed hidden states [N, L, d] of tokens t0 .. t0+L-1) chunk by chunk, for a
    stream `ids` [T] or [N, T] under a rolling cache of `cache_len` tokens. Only the caches and
    one chunk are ever held, so a caller that turns each chunk into NLL holds O(C + B)."""
    require_causal(model.cfg)
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    ids = ids[None] if ids.dim() == 1 else ids
    N, T = ids.shape
    state = RollingCache(model, cache_len, n_sinks, shift, stream_len=T)
    device, S = ids.device, model.cfg.n_sink_tokens
    prefix = torch.arange(S, device=device)
    if S:  # the model's embedding step on no tokens: the prefix alone
        state.in_prefix = True
        _blocks(model, model._embed(ids[:, :0], prefix, S), state)
        state.in_prefix = False
    for t0 in range(0, T, chunk):
        state.t0 = t0
        part = ids[:, t0 : t0 + chunk]
        position_ids = state.query_positions(t0 + torch.arange(part.shape[1], device=device))
        end = S + (min(t0 + part.shape[1], cache_len) if shift else t0 + part.shape[1])
        # the model's own embedding step (scaling, absolute positions), its prefix rows dropped
        x = model._embed(part, torch.cat([prefix, position_ids]), end)[:, S:]
        yield t0, model.norm_final(_blocks(model, x, state))


def _blocks(model: Transformer, x: torch.Tensor, state: RollingCache) -> torch.Tensor:
    """The model's blocks over one chunk, each layer's attention through the cache; the
    sliding layers get their window from the model's own `layer_positions`."""
    full, sliding = model.layer_positions(x.shape[1], x.device)
    for pos in (full, sliding):
        pos.rope, pos.stream = None, state  # the cache rotates q and k itself
    for block in model.blocks:
        x = block(x, sliding if block.sliding else full)
    return x


def stream_hidden(
    model: Transformer,
    ids: torch.Tensor,
    cache_len: int,
    n_sinks: int = 0,
    shift: bool = False,
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """Final-normed hidden states [T, d] of a stream `ids` [T] (what `forward_stream(...,
    hidden=True)` gives for one stream), computed chunk by chunk with O(C) caches."""
    parts = [h[0] for _, h in stream_chunks(model, ids, cache_len, n_sinks, shift, chunk)]
    return torch.cat(parts)


def stream_token_nll(
    model: Transformer,
    ids: torch.Tensor,
    cache_len: int,
    n_sinks: int = 0,
    shift: bool = False,
    chunk: int = DEFAULT_CHUNK,
) -> torch.Tensor:
    """NLL [T-1] of predicting ids[t+1] at each query t of a stream `ids` [T], chunk by
    chunk: the caller never holds T x V logits, only LOGIT_FLOATS of them at a time (Gemma
    3's 262k vocabulary would take 268 MB for a chunk of 256)."""
    T = len(ids)
    out = torch.empty(T - 1)
    rows = max(1, LOGIT_FLOATS // model.cfg.vocab_size)
    for t0, hidden in stream_chunks(model, ids, cache_len, n_sinks, shift, chunk):
        n = max(0, min(hidden.shape[1], T - 1 - t0))
        for i in range(0, n, rows):
            h = hidden[0, i : min(i + rows, n)]
            logits = model.head(h).float()
            targets = ids[t0 + i + 1 : t0 + i + 1 + len(h)]
            nll = F.cross_entropy(logits, targets, reduction="none")
            out[t0 + i : t0 + i + len(h)] = nll.cpu()
    return out
