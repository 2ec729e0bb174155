"""Bounded-cache attention over one long stream, in one masked pass (StreamingLLM).

A `StreamPlan` tells `Attention` which keys each query of a T-token stream sees and at which
positions, so `Transformer.forward_stream` reproduces a token-by-token decode with a rolling
KV cache of C tokens (Xiao et al. 2024) without the per-token loop.

The cache (C tokens, the current one included) keeps the first k stream tokens ("sinks") and
the C - k most recent ones: query t sees key j <= t iff j < k or t - j < C - k. Extra slots
(logit slot, kv_bias, the sink-token prefix of S positions) are always kept on top of the C.

Why one pass is exact. In a decode, token j's keys and values in every layer come from its
hidden states computed when it arrived, against the cache of that moment. Row j of the
mask above is exactly that cache, and the positions below are exactly the ones it had, so
every hidden state of the masked pass equals the decode's. Only the query's position needs
care:

- Without shift, every token keeps its stream position S + t: the mask alone suffices.
- With shift (StreamingLLM's `enable_pos_shift`), positions are re-indexed inside the
  cache: keys sit at S + 0 .. S + n - 1 in stream order and the query is the last one, at
  P(t) = S + min(t, C - 1). A recent key j keeps its distance t - j, but a sink key j < k
  is at distance P(t) - (S + j), and a prefix token s at P(t) - s. So RoPE scores of the
  sink, prefix and kv_bias columns (kv_bias is never rotated, so its score depends on the
  query's absolute position) use the query rotated at P(t), and recent columns the query
  rotated at S + t: two small products, still one pass. ALiBi uses the same two distances.
  (These are the kinds whose `on_shift` is "keys_move", `position.py`.)
- Learned / sinusoidal positions ("fixed_at_entry") enter once, at the embedding: with
  shift, token t enters at P(t), its cache slot on arrival (later moves inside the cache do
  not touch the cached keys, as in a decode). Without shift it enters at S + t, so a learned table shorter than
  the stream cannot encode it (`max_position`): the embedding step refuses, and the analysis
  layer skips those conditions with a reason. Sinusoidal tables extrapolate and are used as
  they are.
- Sliding-window layers (`Positions.window`, model.sliding_window W): a key is seen only
  while its true stream distance (S + t) - p is below W, on top of the cache rule, as in a
  decode whose sliding layers mask by distance.
- ReLU attention divides each row by its number of visible keys (`attention.visible_keys`),
  counted from the row's -inf mask. Here a row's visible keys are exactly the decode's cache
  at that step (slots, prefix, kept sinks and recent tokens), so the pass stays exact with
  the model's own normalisation and no extra convention; before the cache fills it equals
  the plain forward. clipped_softmax has a fixed gamma, so it is exact as it is.

Speed: queries go in blocks of B; each block's recent keys are one unfolded band of
C - k - 1 + B columns, plus the G = S + k global columns and the E slots, so the cost is
O(T (C + B)) instead of O(T^2). Memory: every layer runs over all T tokens at once, so it
grows with T (SmolLM2-135M: about 200 kB a token above the weights); `rolling_cache.py` is
the same computation in chunks with O(C) memory, for long streams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from sinklab.errors import ConfigError

if TYPE_CHECKING:
    from sinklab.model.attention import Attention
    from sinklab.model.config import ModelConfig
    from sinklab.model.position import Positions


def require_causal(cfg: ModelConfig) -> None:
    """Refuse an encoder: a KV cache (and next-token perplexity) exists only for causal models."""
    if not cfg.causal:
        raise ConfigError(
            "model.causal",
            "the streaming evaluation (bounded KV cache) is defined for causal models only; "
            "this model is bidirectional (causal=false)",
        )


@dataclass
class StreamPlan:
    """Which keys each query of one stream sees, and the positions they sit at.

    `length` T stream tokens, `cache_len` C (the current token included), `n_sinks` k first
    tokens kept (0: a plain window of the last C), `shift` positions re-indexed inside the
    cache. `n_prefix` is the model's sink-token count S. `block` is the query block size
    (0: max(16, C // 2)).
    """

    length: int
    cache_len: int
    n_sinks: int = 0
    shift: bool = False
    n_prefix: int = 0
    block: int = 0
    _masks: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.n_sinks < self.cache_len:
            raise ValueError(f"need 0 <= n_sinks < cache_len, got {self.n_sinks}, {self.cache_len}")
        if self.length < 1 or self.n_prefix < 0 or self.block < 0:
            raise ValueError(f"bad plan sizes: {self}")

    # -- positions ---------------------------------------------------------------------------

    def query_positions(self, device: torch.device | None = None) -> torch.Tensor:
        """P(t) [T]: the position each token has as a query (and when it enters)."""
        t = torch.arange(self.length, device=device)
        if self.shift:
            t = t.clamp(max=self.cache_len - 1)
        return self.n_prefix + t

    @property
    def positions_end(self) -> int:
        """One past the largest of `position_ids`, known on the host (no device read)."""
        last = min(self.length, self.cache_len) - 1 if self.shift else self.length - 1
        return self.n_prefix + last + 1

    def position_ids(self, device: torch.device | None = None) -> torch.Tensor:
        """Absolute positions [S + T] at which the embeddings are added (prefix first)."""
        prefix = torch.arange(self.n_prefix, device=device)
        return torch.cat([prefix, self.query_positions(device)])

    # -- attention ---------------------------------------------------------------------------

    def attend(
        self, attn: Attention, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: Positions
    ) -> torch.Tensor:
        """z [N, H, S + T, hd] from un-rotated q [N, L, H, hd], k [N, L, Hkv, hd], v [N, Hkv, L, hd]."""
        if not getattr(attn, "causal", True):
            raise ConfigError("model.causal", "a stream plan needs a causal model (causal=false)")
        S = self.n_prefix
        # RoPE: the queries again at P(t) for the cache columns; other kinds leave q and k
        q_cache = pos.rotate(q[:, S:], at=self.query_positions(q.device))
        q, k = pos.rotate(q), pos.rotate(k)
        q, q_cache, k = q.transpose(1, 2), q_cache.transpose(1, 2), k.transpose(1, 2)
        rep = attn.n_heads // attn.n_kv_heads
        if rep > 1:  # kv head j serves query heads j*rep .. (j+1)*rep - 1
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        slots = _slots(attn, q.shape[0], q.dtype)
        window = pos.window
        z = self._token_rows(attn, q[:, :, S:], q_cache, k, v, slots, pos.slopes, window)
        if S:
            prefix = self._prefix_rows(attn, q[:, :, :S], k, v, slots, pos.slopes, window)
            z = torch.cat([prefix, z], 2)
        return z

    def _token_rows(
        self,
        attn: Attention,
        q: torch.Tensor,
        q_cache: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        slots: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
        slopes: torch.Tensor | None,
        window: int | None = None,
    ) -> torch.Tensor:
        """Rows of the T stream tokens, computed in query blocks against their key band."""
        S, T, ks = self.n_prefix, self.length, self.n_sinks
        B, W = self._block(), self.cache_len - ks - 1
        nb = math.ceil(T / B)
        N, H, _, hd = q.shape
        k_tok, v_tok = k[:, :, S:], v[:, :, S:]

        def blocks(x: torch.Tensor) -> torch.Tensor:  # [N, H, T, hd] -> [N, H, nb, B, hd]
            return F.pad(x, (0, 0, 0, nb * B - T)).view(N, H, nb, B, hd)

        def band(x: torch.Tensor) -> torch.Tensor:  # [N, H, T, hd] -> [N, H, nb, W + B, hd]
            padded = F.pad(x, (0, 0, W, nb * B - T))
            return padded.unfold(2, W + B, B).transpose(-1, -2)

        qb, qcb = blocks(q), blocks(q_cache)
        k_glob = torch.cat([k[:, :, :S], k_tok[:, :, :ks]], dim=2)[:, :, None]
        v_glob = torch.cat([v[:, :, :S], v_tok[:, :, :ks]], dim=2)[:, :, None]
        scores = [qcb @ k_glob.transpose(-1, -2), qb @ band(k_tok).transpose(-1, -2)]
        values = [v_glob.expand(-1, -1, nb, -1, -1), band(v_tok)]
        if slots is not None:
            slot_k, slot_v, _ = slots
            scores.insert(0, qcb @ slot_k[:, :, None].transpose(-1, -2))
            values.insert(0, slot_v[:, :, None].expand(-1, -1, nb, -1, -1))
        bias = self._token_bias(slopes, slots, q.device, window)
        z = self._combine(attn, scores, values, bias, q.dtype)
        return z.reshape(N, H, nb * B, hd)[:, :, :T]

    def _prefix_rows(
        self,
        attn: Attention,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        slots: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
        slopes: torch.Tensor | None,
        window: int | None = None,
    ) -> torch.Tensor:
        """Rows of the S sink-token positions: causal among themselves, never evicted."""
        S = self.n_prefix
        scores, values = [q @ k[:, :, :S].transpose(-1, -2)], [v[:, :, :S]]
        if slots is not None:
            scores.insert(0, q @ slots[0].transpose(-1, -2))
            values.insert(0, slots[1])
        idx = torch.arange(S, device=q.device)
        distance = (idx[:, None] - idx[None, :]).float()
        bias = _distance_bias(distance, (distance >= 0) & in_window(distance, window), slopes)
        if slots is not None:
            bias = _with_slot_bias(slots[2][:, None], bias)
        return self._combine(attn, scores, values, bias, q.dtype)

    def _combine(
        self,
        attn: Attention,
        scores: list[torch.Tensor],
        values: list[torch.Tensor],
        bias: torch.Tensor,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """Scaled (and soft-capped) scores + bias (-inf where hidden) -> the variant's weights
        -> weighted values."""
        s = attn.cap(torch.cat(scores, dim=-1).float() * attn.scale) + bias
        w = attn.weights(s).to(dtype)
        return w @ torch.cat(values, dim=-2)

    def _block(self) -> int:
        # about C/2: smaller blocks waste fewer band columns, larger ones fewer kernel calls
        # (C = 64: 48 ms at B = 32 vs 53 ms at 64 and 79 ms at 8, on one CPU thread)
        return self.block or max(16, self.cache_len // 2)

    def _token_bias(
        self,
        slopes: torch.Tensor | None,
        slots: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None,
        device: torch.device,
        window: int | None = None,
    ) -> torch.Tensor:
        """Additive bias [H or 1, nb, B, E + G + W + B] of the token rows: -inf where a key is
        not in the cache (or past a sliding `window`), -slope x distance under ALiBi, the
        slots' own bias in front."""
        key = ("tokens", device, slopes is not None, window)
        if key not in self._masks:
            self._masks[key] = self._token_layout_bias(slopes, device, window)
        bias = self._masks[key]
        if slots is None:
            return bias
        return _with_slot_bias(slots[2][:, None, None], bias)

    def _token_layout_bias(
        self, slopes: torch.Tensor | None, device: torch.device, window: int | None = None
    ) -> torch.Tensor:
        S, T, C, ks = self.n_prefix, self.length, self.cache_len, self.n_sinks
        B, W = self._block(), C - ks - 1
        nb = math.ceil(T / B)
        t = torch.arange(nb * B, device=device).view(nb, B)  # query stream index
        # global columns: the S prefix tokens (always kept), then sinks j < k (kept once seen)
        p_query = (t.clamp(max=C - 1) if self.shift else t) + S
        p_glob = torch.cat([torch.arange(S, device=device), S + torch.arange(ks, device=device)])
        seen = torch.cat(
            [
                torch.ones(nb, B, S, dtype=torch.bool, device=device),
                torch.arange(ks, device=device)[None, None] <= t[..., None],
            ],
            dim=-1,
        )
        seen = seen & in_window((S + t)[..., None] - p_glob, window)  # true stream distance
        glob = _distance_bias((p_query[..., None] - p_glob).float(), seen, slopes)
        # band columns: key j = b*B - W + c; recent iff 0 <= t - j < C - k, and not a sink
        j = torch.arange(nb, device=device)[:, None] * B - W + torch.arange(W + B, device=device)
        d = t[..., None] - j[:, None, :]
        recent = (d >= 0) & (d < C - ks) & (j >= ks)[:, None, :] & in_window(d, window)
        return torch.cat([glob, _distance_bias(d.float(), recent, slopes)], dim=-1)


def in_window(distance: torch.Tensor, window: int | None) -> torch.Tensor:
    """Whether true query-key distances fall inside a sliding `window` (all True for None)."""
    if window is None:
        return torch.ones_like(distance, dtype=torch.bool)
    return distance < window


def _with_slot_bias(slot_bias: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Prepend the slots' columns [H, 1.., E] to a key bias [H or 1, ..., keys]."""
    heads = max(slot_bias.shape[0], bias.shape[0])
    shape = bias.shape[1:-1]
    return torch.cat([slot_bias.expand(heads, *shape, -1), bias.expand(heads, *shape, -1)], dim=-1)


def _distance_bias(
    distance: torch.Tensor, visible: torch.Tensor, slopes: torch.Tensor | None
) -> torch.Tensor:
    """[H or 1, *shape]: 0 (or -slope x distance under ALiBi) where visible, -inf elsewhere."""
    hidden = torch.zeros_like(distance).masked_fill(~visible, float("-inf"))[None]
    if slopes is None:
        return hidden
    view = (-1,) + (1,) * distance.dim()
    return hidden - slopes.to(distance.device).view(view) * distance.clamp(min=0)[None]


def _slots(
    attn: Attention, n: int, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """Keys [N, H, E, hd], values [N, H, E, hd] and bias [H or 1, E] of the always-kept slots
    (logit slot, kv_bias), in `Attention`'s column order; None without slots."""
    if not attn.n_slots:
        return None
    H, hd = attn.n_heads, attn.head_dim
    rep = H // attn.n_kv_heads
    keys, vals, bias = [], [], []
    device = attn.wq.weight.device
    if attn.logit_slot:
        zero = torch.zeros(n, H, 1, hd, dtype=dtype, device=device)
        keys.append(zero)
        vals.append(zero)
        logit = attn.sink_logit if hasattr(attn, "sink_logit") else torch.zeros(1, device=device)
        bias.append(logit.float().expand(H)[:, None])
    if attn.has_kv_bias:
        for param, out in ((attn.k_bias, keys), (attn.v_bias, vals)):
            full = param.to(dtype).repeat_interleave(rep, dim=0)  # [H, hd]
            out.append(full[None, :, None].expand(n, -1, -1, -1))
        bias.append(torch.zeros(H, 1, device=device))
    return torch.cat(keys, dim=2), torch.cat(vals, dim=2), torch.cat(bias, dim=1)
