"""Position encodings: RoPE, ALiBi, sinusoidal tables, and the (causal or not) additive bias.

Everything here is computed on the fly from the config (no buffers), so a model built on the
meta device or loaded from a state dict needs nothing recomputed, and state dicts carry only
learned weights.
"""

from __future__ import annotations

import math

import torch


def rope_cos_sin(
    length: int, head_dim: int, theta: float, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin tables [length, head_dim] in Llama's rotate-half layout (frequencies repeated twice).

    The frequencies are computed exactly as transformers' default Llama rotary embedding does,
    so converted Hugging Face checkpoints reproduce their logits.
    """
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim
    inv_freq = 1.0 / (theta**exponent)
    angles = torch.outer(torch.arange(length, device=device, dtype=torch.float32), inv_freq)
    angles = torch.cat((angles, angles), dim=-1)
    return angles.cos(), angles.sin()


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [..., T, head_dim] by the angles of positions 0..T-1."""
    return (x * cos.to(x.dtype)) + (rotate_half(x) * sin.to(x.dtype))


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
) -> torch.Tensor:
    """Additive attention bias [H or 1, length, length]: -inf above the diagonal, and with ALiBi
    slopes, -slope * (query - key) on and below it.

    `causal=False` (an encoder) masks nothing; ALiBi then penalises the symmetric distance
    -slope * |query - key|, the usual bidirectional extension (as in MosaicBERT), so a key's
    penalty does not depend on which side of the query it sits.
    """
    pos = torch.arange(length, device=device)
    distance = (pos[:, None] - pos[None, :]).float()  # query - key
    bias = torch.zeros(length, length, device=device)
    if causal:
        bias = bias.masked_fill(distance < 0, float("-inf"))
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
