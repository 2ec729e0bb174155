"""Norms and MLPs, chosen by name from the config."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sinklab.model.config import ModelConfig
from sinklab.model.recorder import Recorder


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain, computed in fp32 like Llama's.

    The gain is applied as (offset + w): Gemma stores its gains zero-centred and multiplies by
    (1 + w); with offset 0 this is Llama's norm. It starts at an effective gain of one either way.
    """

    def __init__(self, dim: int, eps: float, offset: float = 0.0) -> None:
        super().__init__()
        self.eps = eps
        self.offset = offset
        self.weight = nn.Parameter(torch.full((dim,), 1.0 - offset))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        if self.offset:
            return ((self.weight.float() + self.offset) * x).to(dtype)
        return self.weight * x.to(dtype)


def make_norm(cfg: ModelConfig, dim: int | None = None) -> nn.Module:
    """The configured norm over `dim` features (d_model unless given)."""
    dim = cfg.d_model if dim is None else dim
    if cfg.norm == "rmsnorm":
        return RMSNorm(dim, cfg.norm_eps, cfg.norm_offset)
    return nn.LayerNorm(dim, eps=cfg.norm_eps, bias=cfg.bias)


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "swiglu": F.silu,
    "geglu": F.gelu,
    "gelu": F.gelu,
    "relu": F.relu,
}


def activation(cfg: ModelConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    """The MLP's nonlinearity; GELU in its tanh form when `gelu_approx=tanh` (GPT-2, Gemma)."""
    if cfg.mlp in ("gelu", "geglu") and cfg.gelu_approx == "tanh":
        return _gelu_tanh
    return _ACTIVATIONS[cfg.mlp]


class MLP(nn.Module):
    """Gated (swiglu/geglu: act(x W_gate) * x W_up) or plain (gelu/relu: act(x W_up)) MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gated = cfg.mlp in ("swiglu", "geglu")
        self.act = activation(cfg)
        if self.gated:
            self.w_gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.w_up = nn.Linear(cfg.d_model, cfg.d_ff, bias=cfg.bias)
        self.w_down = nn.Linear(cfg.d_ff, cfg.d_model, bias=cfg.bias)

    def forward(self, x: torch.Tensor, rec: Recorder) -> torch.Tensor:
        if self.gated:
            hidden = self.act(self.w_gate(x)) * self.w_up(x)
        else:
            hidden = self.act(self.w_up(x))
        hidden = rec.hook("hidden", hidden, pos_dim=1)
        return self.w_down(hidden)
