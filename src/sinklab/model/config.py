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
NormPosition = Literal["pre", "post", "sandwich", "reordered"]
QkNormScope = Literal["head", "projection"]
GeluApprox = Literal["none", "tanh"]
LayerType = Literal["full", "sliding"]
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
LAYER_TYPES: tuple[str, ...] = get_args(LayerType)
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
    # Where each sublayer f's norms sit: pre x + f(n(x)) (Llama); post n(x + f(x)) (the 2017
    # Transformer); sandwich x + n_out(f(n(x))) (Gemma 2/3); reordered x + n_out(f(x)) (OLMo 2).
    norm_position: NormPosition = "pre"
    # rmsnorm only: the gain is applied as (norm_offset + w); Gemma's (1 + w) is 1.0.
    norm_offset: float = 0.0
    qk_norm: bool = False  # RMSNorm on q and k before RoPE (Qwen3, Gemma 3, OLMo 2)
    # head: one norm over each head's dims (Qwen3, Gemma 3); projection: one over the whole q
    # (and k) projection before the split into heads (OLMo 2).
    qk_norm_scope: QkNormScope = "head"
    mlp: Mlp = "swiglu"
    gelu_approx: GeluApprox = "none"  # gelu / geglu only: tanh is GPT-2's gelu_new, Gemma's
    # GPT-NeoX / GPT-J: x + attn(n_attn(x)) + mlp(n_mlp(x)), both sublayers read the same x.
    parallel_block: bool = False
    bias: bool = False  # biases on every linear layer and on LayerNorm
    qkv_bias: bool = False  # biases on the q, k, v projections alone (Qwen2)
    attn_scale: float | None = None  # score scale; None: 1 / sqrt(head_dim)
    attn_softcap: float | None = None  # scores -> cap * tanh(scores / cap) (Gemma 2)
    logit_softcap: float | None = None  # logits -> cap * tanh(logits / cap) (Gemma 2)
    scale_embeddings: bool = False  # token embeddings times sqrt(d_model) (Gemma)
    # Sliding-window attention: query t sees key k only when t - k < sliding_window. Which
    # layers: `layer_types` (one "full" | "sliding" per layer); None is every layer sliding
    # when a window is set (Mistral), else every layer full.
    sliding_window: int | None = None
    layer_types: list[str] | None = None
    rope_local_theta: float | None = (
        None  # RoPE base of sliding layers (Gemma 3: 1e4); None: rope_theta
    )
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
        # An explicit head_dim may make n_heads * head_dim differ from d_model (Qwen3, Gemma 3):
        # wq maps d_model to n_heads * head_dim and wo maps it back.
        check(self.head_dim > 0, "model.head_dim", f"must be positive, got {self.head_dim}")
        self._check_family_options()
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

    def _check_family_options(self) -> None:
        """The options that imported families need (each off by default)."""
        if self.parallel_block:
            check(
                self.norm_position == "pre",
                "model.parallel_block",
                f"parallel blocks read one pre-normed input; needs norm_position=pre, got {self.norm_position}",
            )
            check(self.mlp != "none", "model.parallel_block", "needs an MLP (mlp is none)")
        check(
            self.norm_offset == 0.0 or self.norm == "rmsnorm",
            "model.norm_offset",
            "only rmsnorm gains take an offset",
        )
        for key in ("attn_scale", "attn_softcap", "logit_softcap"):
            value = getattr(self, key)
            check(
                value is None or value > 0, f"model.{key}", f"must be positive or null, got {value}"
            )
        if self.attn_softcap is not None:
            check(
                self.attention == "softmax",
                "model.attn_softcap",
                f"caps softmax scores; attention={self.attention} is not softmax",
            )
        if self.sliding_window is not None:
            check(
                self.sliding_window > 0,
                "model.sliding_window",
                f"must be positive or null, got {self.sliding_window}",
            )
            check(self.causal, "model.sliding_window", "a sliding window needs a causal model")
        if self.layer_types is not None:
            self.layer_types = list(self.layer_types)
            check(
                len(self.layer_types) == self.n_layers,
                "model.layer_types",
                f"needs one entry per layer ({self.n_layers}), got {len(self.layer_types)}",
            )
            for kind in self.layer_types:
                check(
                    kind in LAYER_TYPES,
                    "model.layer_types",
                    f"{kind!r} is not allowed; choose one of: {', '.join(LAYER_TYPES)}",
                )
            check(
                "sliding" not in self.layer_types or self.sliding_window is not None,
                "model.layer_types",
                "names sliding layers but model.sliding_window is null",
            )
        if self.rope_local_theta is not None:
            check(
                self.rope_local_theta > 0,
                "model.rope_local_theta",
                f"must be positive or null, got {self.rope_local_theta}",
            )
            check(self.pos == "rope", "model.rope_local_theta", f"needs pos=rope, got {self.pos}")

    def is_sliding(self, layer: int) -> bool:
        """Whether block `layer` attends through the sliding window."""
        if self.sliding_window is None:
            return False
        return self.layer_types is None or self.layer_types[layer] == "sliding"

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
