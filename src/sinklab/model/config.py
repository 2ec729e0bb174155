"""`ModelConfig`: every architectural choice of the decoder, as plain values Hydra can hold.

Components are chosen by name (as in litgpt) so the config stays plain YAML; derived sizes and
validation live in `__post_init__`, so an invalid combination fails when the config is built,
before any weights exist.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from sinklab.configs import check_choices, from_mapping
from sinklab.errors import check
from sinklab.model.position import (
    Position,
    PositionEncoding,
    RopeScaling,
    position_class,
    position_encoding,
)

# The choices live in these types; the tuples are for code that loops over them (tests, bench).
# `Position` (the kinds of `model.pos`) lives with their classes in `position.py`.
Norm = Literal["rmsnorm", "layernorm"]
NormPosition = Literal["pre", "post"]
Mlp = Literal["swiglu", "geglu", "gelu", "relu", "none"]
Attention = Literal[
    "softmax",
    "sigmoid",
    "sigmoid_norm",
    "softmax_off_by_one",
    "sink_logit",
    "gated",
    "relu",
    "clipped_softmax",
]
Gate = Literal["per_head", "per_channel"]
POSITIONS: tuple[str, ...] = get_args(Position)
NORMS: tuple[str, ...] = get_args(Norm)
NORM_POSITIONS: tuple[str, ...] = get_args(NormPosition)
MLPS: tuple[str, ...] = get_args(Mlp)
ATTENTIONS: tuple[str, ...] = get_args(Attention)
GATES: tuple[str, ...] = get_args(Gate)
# Variants whose attention rows sum to one over all columns (tokens plus extra slots). Not
# clipped_softmax: clipping moves its row sums off one, so the probe uses the proxy scores.
NORMALISED_ATTENTIONS = ("softmax", "sigmoid_norm", "softmax_off_by_one", "sink_logit", "gated")


@dataclass
class ModelConfig:
    """Architecture of a Llama-style decoder (or, with `causal=False`, the same stack as a
    bidirectional encoder). `None` sizes are derived in `__post_init__`."""

    vocab_size: int = 4096
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 8
    n_kv_heads: int | None = None  # None: n_heads (plain multi-head attention)
    head_dim: int | None = None  # None: d_model // n_heads
    d_ff: int | None = None  # None: 4*d_model for gelu/relu, 8/3*d_model (multiple of 8) for GLUs
    max_seq_len: int = 256
    pos: Position = "rope"
    rope_theta: float = 10000.0
    # pos=rope only: the share of each head's dims RoPE turns (GPT-NeoX / Pythia 0.25: the
    # first int(head_dim x rotary_pct) dims, which must be even; the rest pass unrotated).
    rotary_pct: float = 1.0
    # pos=rope only: {type: linear | dynamic, factor: F >= 1}, Llama's / Qwen's rope_scaling
    # (position interpolation, or NTK-aware past max_seq_len; see position.RopeScaling).
    rope_scaling: RopeScaling | None = None
    norm: Norm = "rmsnorm"
    norm_eps: float = 1e-5
    norm_position: NormPosition = "pre"
    qk_norm: bool = False
    mlp: Mlp = "swiglu"
    bias: bool = False
    tie_embeddings: bool = True
    dropout: float = 0.0
    init_std: float = 0.02
    attention: Attention = "softmax"
    gate: Gate = "per_head"  # only read when attention == "gated"
    # clipped_softmax only (Bondarenko et al. 2023): gamma = -clip_alpha / max_seq_len, zeta
    clip_alpha: float = 4.0
    clip_zeta: float = 1.0
    n_sink_tokens: int = 0
    kv_bias: bool = False
    # False: bidirectional attention (an encoder, trained with data.objective=mlm). Every
    # query sees every key; ALiBi then penalises the symmetric distance |t - k|.
    causal: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.rope_scaling, Mapping):  # built directly, not through from_dict
            self.rope_scaling = from_mapping(RopeScaling, self.rope_scaling, "model.rope_scaling")
        check_choices(self, "model")
        for key in ("vocab_size", "d_model", "n_layers", "n_heads", "max_seq_len"):
            check(
                int(getattr(self, key)) > 0,
                f"model.{key}",
                f"must be positive, got {getattr(self, key)}",
            )
        if self.n_kv_heads is None:
            self.n_kv_heads = self.n_heads
        check(self.n_kv_heads > 0, "model.n_kv_heads", f"must be positive, got {self.n_kv_heads}")
        check(
            self.n_heads % self.n_kv_heads == 0,
            "model.n_kv_heads",
            f"n_heads={self.n_heads} is not divisible by n_kv_heads={self.n_kv_heads}",
        )
        if self.head_dim is None:
            check(
                self.d_model % self.n_heads == 0,
                "model.n_heads",
                f"n_heads={self.n_heads} does not divide d_model={self.d_model}; set model.head_dim or change model.n_heads",
            )
            self.head_dim = self.d_model // self.n_heads
        check(
            self.n_heads * self.head_dim == self.d_model,
            "model.head_dim",
            f"n_heads*head_dim={self.n_heads}*{self.head_dim}={self.n_heads * self.head_dim} does not match d_model={self.d_model}",
        )
        position_class(self.pos).check(self)
        if self.d_ff is None:
            if self.mlp in ("swiglu", "geglu"):
                self.d_ff = 8 * ((int(8 * self.d_model / 3) + 7) // 8)
            else:
                self.d_ff = 4 * self.d_model
        check(
            self.d_ff > 0 or self.mlp == "none", "model.d_ff", f"must be positive, got {self.d_ff}"
        )
        check(
            self.n_sink_tokens >= 0,
            "model.n_sink_tokens",
            f"must be >= 0, got {self.n_sink_tokens}",
        )
        check(0.0 <= self.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {self.dropout}")
        check(self.norm_eps > 0, "model.norm_eps", f"must be positive, got {self.norm_eps}")
        check(self.rope_theta > 0, "model.rope_theta", f"must be positive, got {self.rope_theta}")
        check(self.clip_alpha >= 0, "model.clip_alpha", f"must be >= 0, got {self.clip_alpha}")
        check(self.clip_zeta >= 1, "model.clip_zeta", f"must be >= 1, got {self.clip_zeta}")

    @property
    def position(self) -> PositionEncoding:
        """The object of `pos`: how it enters the model, its longest position, what a cache
        shift does to it (`position.py`)."""
        return position_encoding(self)

    @property
    def normalised_attention(self) -> bool:
        """Whether attention rows sum to one, so sink scores need no proxy."""
        return self.attention in NORMALISED_ATTENTIONS

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ModelConfig:
        """Build from a plain mapping; an unknown key or a wrong type is a one-line ConfigError."""
        return from_mapping(cls, values, "model")
