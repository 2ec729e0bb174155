"""Position encodings: one object per kind (`position_class`), and the primitives they use.

A kind is the one place that knows how it enters the model; nothing else branches on
`model.pos`. Each class states:

- `enters`: "embedding" (an absolute vector added to the input once: learned, sinusoidal),
  "rotation" (q and k rotated in every layer: rope), "bias" (a score bias in every layer:
  alibi) or "nothing" (none);
- `max_position` / `fits` (from `max_tokens`): the longest run of token positions it encodes
  after the sink-token prefix, None when it extrapolates. Only learned stops, at
  `model.max_seq_len`: that rule lives in `Learned.max_tokens` and nowhere else;
- `on_shift`: what happens to a cached token's position when a streaming cache shifts
  (`streaming.py`): "keys_move" (its score is taken at its current cache slot: rope, alibi),
  "fixed_at_entry" (it kept the position it entered at, as in a decode: learned,
  sinusoidal), or "no_positions" (none).

The model builds one object from its config (`ModelConfig.position`) and asks it for the
one embedding step (`add`), the per-forward tensors every layer shares (`positions`) and,
for learned, the table it owns (`table`, registered as `pos_emb` so state dicts keep their
keys). Everything else is computed on the fly from the config (no buffers), so a model
built on the meta device or loaded from a state dict needs nothing recomputed, and state
dicts carry only learned weights.

This module imports nothing from the rest of `sinklab.model`: attention, streaming and
the config all sit above it (the config reads its settings through `PositionSettings`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

import torch
from torch import nn

from sinklab.configs import check_choices
from sinklab.errors import check

Position = Literal["rope", "alibi", "learned", "sinusoidal", "none"]
Entry = Literal["embedding", "rotation", "bias", "nothing"]
OnShift = Literal["keys_move", "fixed_at_entry", "no_positions"]
ScalingType = Literal["linear", "dynamic"]


@dataclass
class RopeScaling:
    """`model.rope_scaling`, as Llama and Qwen configs carry it: `{type: linear, factor: F}`
    or `{type: dynamic, factor: F}` (transformers' names; factor >= 1, as they require).

    - linear (position interpolation): every frequency divided by F, i.e. position p turns
      like p / F.
    - dynamic (NTK-aware): while a forward covers at most max_seq_len positions, plain RoPE;
      over L > max_seq_len positions the base grows to theta x (F L / max_seq_len - (F - 1))
      ^ (d / (d - 2)), d the rotary dim, so the slowest frequencies stretch to fit. L is the
      forward's length (sink-token prefix included), which is transformers' rule for one
      forward from position 0; a stream plan builds one table for the whole stream, so
      there L is the stream's length.
    """

    type: ScalingType
    factor: float

    def __post_init__(self) -> None:
        check_choices(self, "model.rope_scaling")
        check(
            self.factor >= 1.0,
            "model.rope_scaling.factor",
            f"must be >= 1 (transformers' rule), got {self.factor}",
        )

    def theta(self, theta: float, length: int, max_seq_len: int, dim: int) -> float | torch.Tensor:
        """The RoPE base for a forward over `length` positions, in transformers' arithmetic
        (so converted checkpoints reproduce their logits): Python floats up to max_seq_len
        (their tables from init), float32 from a tensor length past it (their recompute)."""
        if self.type != "dynamic":
            return theta
        exponent = dim / (dim - 2)
        if length <= max_seq_len:
            return theta * (self.factor * max_seq_len / max_seq_len - (self.factor - 1)) ** exponent
        n = torch.tensor(length)  # int64: the scalar ops below run in float32
        return theta * ((self.factor * n / max_seq_len) - (self.factor - 1)) ** exponent

    @property
    def divide(self) -> float:
        """What every frequency is divided by."""
        return self.factor if self.type == "linear" else 1.0


# -- what every layer of one forward shares ---------------------------------------------------


class StreamAttention(Protocol):
    """A bounded-cache plan as a layer sees it (`streaming.StreamPlan`): it takes the layer's
    un-rotated q/k/v and returns the heads' outputs. A Protocol, so that attention never
    imports streaming."""

    def attend(
        self, attn: Any, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: Positions
    ) -> torch.Tensor: ...


@dataclass
class Positions:
    """Position information shared by every layer of one forward pass over L = S + T positions
    (built by `PositionEncoding.positions`)."""

    length: int
    n_prefix: int
    device: torch.device
    rope: tuple[torch.Tensor, torch.Tensor] | None = None
    slopes: torch.Tensor | None = None
    # Long-stream evaluation only (`model/streaming.py`): which keys each query sees and at
    # which positions. None on the training and probe paths.
    stream: StreamAttention | None = None
    causal: bool = True  # False: bidirectional (an encoder), no key is masked
    # A sliding layer's window (`model.sliding_window`): key k is seen from query t only when
    # t - k < window. None on full layers.
    window: int | None = None
    _bias: torch.Tensor | None = field(default=None, repr=False)

    def seq_bias(self) -> torch.Tensor:
        """Causal mask (+ sliding window, + ALiBi) additive bias [H or 1, L, L], built once per
        forward and only if needed; without the mask for an encoder."""
        if self._bias is None:
            self._bias = causal_bias(
                self.length, self.slopes, self.device, self.causal, window=self.window
            )
        return self._bias

    def rotate(self, x: torch.Tensor, at: torch.Tensor | None = None) -> torch.Tensor:
        """q or k [N, L, heads, hd] rotated at positions 0..L-1, or at `at` [L'] for
        x [N, L', heads, hd] (a stream's queries at their cache slots); x itself without RoPE."""
        if self.rope is None:
            return x
        cos, sin = self.rope
        if at is not None:
            cos, sin = cos[at], sin[at]
        return apply_rope(x, cos[:, None], sin[:, None])  # [L, 1, hd]: broadcast over heads


# -- one object per kind ----------------------------------------------------------------------


class PositionSettings(Protocol):
    """The `ModelConfig` fields the encodings read (a Protocol: this module sits below config)."""

    pos: str
    d_model: int
    n_heads: int
    head_dim: int | None
    max_seq_len: int
    n_sink_tokens: int
    causal: bool
    rope_theta: float
    rotary_pct: float
    rope_scaling: RopeScaling | None
    sliding_window: int | None
    rope_local_theta: float | None


class PositionEncoding:
    """A kind that adds nothing (`pos=none`); the other kinds override what they change."""

    enters: ClassVar[Entry] = "nothing"
    on_shift: ClassVar[OnShift] = "no_positions"

    def __init__(self, cfg: PositionSettings) -> None:
        self.cfg = cfg

    @classmethod
    def check(cls, cfg: PositionSettings) -> None:
        """Refuse settings this kind cannot run, with a ConfigError naming the key; the config
        calls it when it is built, before any weights exist. Here: the RoPE-only keys keep
        their defaults unless the kind rotates."""
        if cls.enters != "rotation":
            check(
                cfg.rotary_pct == 1.0,
                "model.rotary_pct",
                f"only pos=rope rotates; got {cfg.rotary_pct} with pos={cfg.pos}",
            )
            check(
                cfg.rope_scaling is None,
                "model.rope_scaling",
                f"only pos=rope rotates; got {cfg.rope_scaling} with pos={cfg.pos}",
            )

    @staticmethod
    def max_tokens(max_seq_len: int) -> int | None:
        """How many token positions (after the sink-token prefix) the kind encodes, for a
        model of `max_seq_len`; None: it extrapolates to any length."""
        return None

    @property
    def max_position(self) -> int | None:
        """The last token position it encodes (0-based, prefix not counted); None: no limit."""
        n = self.max_tokens(self.cfg.max_seq_len)
        return None if n is None else n - 1

    def fits(self, n_tokens: int) -> bool:
        """Whether token positions 0 .. n_tokens - 1 all have an encoding."""
        n = self.max_tokens(self.cfg.max_seq_len)
        return n is None or n_tokens <= n

    def check_window(self, n_tokens: int) -> None:
        """The training and probe paths (`Transformer.forward`): an absolute encoding refuses a
        window longer than model.max_seq_len, sinusoidal too (it extrapolates, but only the
        stream path, `forward_stream`, is meant to go past the trained window)."""
        if self.enters == "embedding" and n_tokens > self.cfg.max_seq_len:
            raise ValueError(
                f"sequence length {n_tokens} exceeds model.max_seq_len={self.cfg.max_seq_len}"
            )

    def table(self) -> nn.Module | None:
        """The learned weights the kind owns (the model registers them as `pos_emb`)."""
        return None

    def add(
        self, x: torch.Tensor, position_ids: torch.Tensor, end: int, table: nn.Module | None
    ) -> torch.Tensor:
        """x [N, L, d] plus the absolute encoding at `position_ids` [L] (sink-token prefix
        included), all below `end`; unchanged for kinds that do not enter as an embedding.
        `end` is a host int, so the training path never reads the device."""
        return x

    def positions(self, length: int, device: torch.device, sliding: bool = False) -> Positions:
        """What every layer of one forward over `length` positions shares; with `sliding`,
        what the sliding-window layers share (the window, and for RoPE their own base)."""
        cfg = self.cfg
        return Positions(
            length=length,
            n_prefix=cfg.n_sink_tokens,
            device=device,
            causal=cfg.causal,
            window=cfg.sliding_window if sliding else None,
        )


class Rope(PositionEncoding):
    """Rotary embeddings (Su et al.): q and k rotated by their positions in every layer, so a
    score depends on the query-key distance only; in a shifted cache a key is rotated at its
    current slot."""

    enters = "rotation"
    on_shift = "keys_move"

    @classmethod
    def check(cls, cfg: PositionSettings) -> None:
        super().check(cfg)
        pct = cfg.rotary_pct
        check(0.0 < pct <= 1.0, "model.rotary_pct", f"must be in (0, 1], got {pct}")
        if cfg.rope_scaling is not None and cfg.rope_scaling.type == "dynamic":
            check(
                cfg.head_dim is not None and rotary_dim(cfg) > 2,
                "model.rope_scaling",
                "dynamic scaling raises the base to d / (d - 2): it needs a rotary dim d > 2",
            )
        if pct == 1.0:
            check(
                cfg.head_dim is not None and cfg.head_dim % 2 == 0,
                "model.head_dim",
                f"RoPE needs an even head_dim, got {cfg.head_dim}",
            )
            return
        dim = rotary_dim(cfg)
        check(
            dim >= 2 and dim % 2 == 0,
            "model.rotary_pct",
            f"rotates int({cfg.head_dim} x {pct}) = {dim} dims of each head; "
            "the rotary dim must be even and at least 2",
        )

    def tables(
        self, length: int, device: torch.device | None = None, base: float | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos/sin [length, rotary dim] of positions 0..length-1 (the rotary dim is head_dim,
        or its `rotary_pct` share: `apply_rope` then turns only those leading dims), at RoPE
        base `base` (default model.rope_theta)."""
        cfg, dim = self.cfg, rotary_dim(self.cfg)
        base = cfg.rope_theta if base is None else base
        scaling = cfg.rope_scaling
        if scaling is None:
            return rope_cos_sin(length, dim, base, device)
        theta = scaling.theta(base, length, cfg.max_seq_len, dim)
        return rope_cos_sin(length, dim, theta, device, divide=scaling.divide)

    def positions(self, length: int, device: torch.device, sliding: bool = False) -> Positions:
        pos = super().positions(length, device, sliding)
        local = self.cfg.rope_local_theta if sliding else None
        pos.rope = self.tables(length, device, local)
        return pos


class Alibi(PositionEncoding):
    """ALiBi (Press et al.): a per-head score penalty linear in the query-key distance; in a
    shifted cache the distance is taken from the key's current slot."""

    enters = "bias"
    on_shift = "keys_move"

    def positions(self, length: int, device: torch.device, sliding: bool = False) -> Positions:
        pos = super().positions(length, device, sliding)
        pos.slopes = alibi_slopes(self.cfg.n_heads).to(device)
        return pos


class Learned(PositionEncoding):
    """A learned table of `max_seq_len` token positions (plus the sink-token prefix), added to
    the input once; a cached token keeps the position it entered at."""

    enters = "embedding"
    on_shift = "fixed_at_entry"

    @staticmethod
    def max_tokens(max_seq_len: int) -> int:
        return max_seq_len

    def table(self) -> nn.Module:
        """One row per token position it encodes, plus one per sink-token prefix slot."""
        cfg = self.cfg
        return nn.Embedding(self.max_tokens(cfg.max_seq_len) + cfg.n_sink_tokens, cfg.d_model)

    def add(
        self, x: torch.Tensor, position_ids: torch.Tensor, end: int, table: nn.Module | None
    ) -> torch.Tensor:
        assert isinstance(table, nn.Embedding)
        rows = table.num_embeddings
        if end > rows:
            raise ValueError(
                f"position {end - 1} is past the learned table "
                f"({rows} rows, model.max_seq_len={self.cfg.max_seq_len})"
            )
        return x + table(position_ids)


class Sinusoidal(PositionEncoding):
    """The fixed sin/cos table of Vaswani et al., added to the input once; it extrapolates past
    `max_seq_len` on the stream path. A cached token keeps the position it entered at."""

    enters = "embedding"
    on_shift = "fixed_at_entry"

    @classmethod
    def check(cls, cfg: PositionSettings) -> None:
        check(
            cfg.d_model % 2 == 0,
            "model.d_model",
            f"sinusoidal positions need an even d_model, got {cfg.d_model}",
        )

    def add(
        self, x: torch.Tensor, position_ids: torch.Tensor, end: int, table: nn.Module | None
    ) -> torch.Tensor:
        return x + sinusoidal_table(end, self.cfg.d_model, x.device)[position_ids].to(x.dtype)


POSITION_CLASSES: dict[str, type[PositionEncoding]] = {
    "rope": Rope,
    "alibi": Alibi,
    "learned": Learned,
    "sinusoidal": Sinusoidal,
    "none": PositionEncoding,
}


def rotary_dim(cfg: PositionSettings) -> int:
    """How many leading dims of each head RoPE turns: int(head_dim x rotary_pct), as GPT-NeoX
    (`rotary_ndims`) and transformers (`partial_rotary_factor`) round it."""
    assert cfg.head_dim is not None
    return int(cfg.head_dim * cfg.rotary_pct)


def position_class(name: str) -> type[PositionEncoding]:
    """The class of `model.pos` = name: the one place a name becomes a class."""
    return POSITION_CLASSES[name]


def position_encoding(cfg: PositionSettings) -> PositionEncoding:
    """The encoding object of a model config."""
    return position_class(cfg.pos)(cfg)


# -- the primitives ---------------------------------------------------------------------------
def rope_cos_sin(
    length: int,
    head_dim: int,
    theta: float | torch.Tensor,
    device: torch.device | None = None,
    divide: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [length, head_dim] in Llama's rotate-half layout (frequencies repeated twice).

    The frequencies are computed exactly as transformers' default Llama rotary embedding does,
    so converted Hugging Face checkpoints reproduce their logits; `divide` (linear scaling)
    divides them, as transformers' linear RoPE does.
    """
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
    inv_freq = 1.0 / (theta**exponent)
    if divide != 1.0:
        inv_freq = inv_freq / divide
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [..., T, head_dim] by the angles of positions 0..T-1.

    Tables narrower than head_dim (partial rotary, GPT-NeoX / Pythia) turn only the first
    cos.shape[-1] dims, rotate-half within them, and pass the rest through unchanged.
    """
    dim = cos.shape[-1]
    if dim == x.shape[-1]:
        return (x * cos.to(x.dtype)) + (rotate_half(x) * sin.to(x.dtype))
    turned, rest = x[..., :dim], x[..., dim:]
    turned = (turned * cos.to(x.dtype)) + (rotate_half(turned) * sin.to(x.dtype))
    return torch.cat((turned, rest), dim=-1)


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """Per-head ALiBi slopes (Press et al., 2022, "Train Short, Test Long").

    For a power of two n the slopes are the geometric sequence 2^(-8/n), 2^(-16/n), ...,
    2^(-8): 4 heads get 1/4, 1/16, 1/64, 1/256 and 8 heads 1/2, 1/4, ..., 1/256. More heads
    add steeper slopes in between; the shallowest is always 1/256. Seen from query 63, the
    penalty on key 0 (slope x 63) of the 4 heads is 15.75, 3.94, 0.98 and 0.25 logits, so only
    the steepest head effectively blocks the first token.
    Otherwise the paper takes the slopes of the closest smaller power of two p, then adds
    every other slope of 2p until n heads have one.
    """
    if n_heads <= 0:
        raise ValueError(f"n_heads must be positive, got {n_heads}")

    def geometric(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    p = 2 ** math.floor(math.log2(n_heads))
    slopes = geometric(p)
    if p < n_heads:
        slopes += geometric(2 * p)[0::2][: n_heads - p]
    return torch.tensor(slopes, dtype=torch.float32)


def causal_bias(
    length: int,
    slopes: torch.Tensor | None = None,
    device: torch.device | None = None,
    causal: bool = True,
    window: int | None = None,
) -> torch.Tensor:
    """Additive attention bias [H or 1, length, length]: -inf above the diagonal (and, with a
    sliding `window`, at distances >= window), and with ALiBi slopes, -slope * (query - key) on
    and below it.

    `causal=False` (an encoder) masks nothing; ALiBi then penalises the symmetric distance
    -slope * |query - key|, the usual bidirectional extension (as in MosaicBERT), so a key's
    penalty does not depend on which side of the query it sits.
    """
    pos = torch.arange(length, device=device)
    distance = (pos[:, None] - pos[None, :]).float()  # query - key
    bias = torch.zeros(length, length, device=device)
    if causal:
        bias = bias.masked_fill(distance < 0, float("-inf"))
    if window is not None:
        bias = bias.masked_fill(distance >= window, float("-inf"))
    if slopes is None:
        return bias[None]
    penalty = distance.clamp(min=0) if causal else distance.abs()
    return bias[None] - slopes.to(device)[:, None, None] * penalty[None]


def sinusoidal_table(length: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed absolute encodings of Vaswani et al. (2017): sin on even channels, cos on odd ones."""
    pos = torch.arange(length, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device).float() * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table
