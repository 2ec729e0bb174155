"""Norms and MLPs, chosen by name from the config."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sinklab.model.config import ModelConfig
from sinklab.model.recorder import Recorder


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain, computed in fp32 like Llama's."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def make_norm(cfg: ModelConfig) -> nn.Module:
    if cfg.norm == "rmsnorm":
        return RMSNorm(cfg.d_model, cfg.norm_eps)
    return nn.LayerNorm(cfg.d_model, eps=cfg.norm_eps, bias=cfg.bias)


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "swiglu": F.silu,
    "geglu": F.gelu,
    "gelu": F.gelu,
    "relu": F.relu,
}


class MLP(nn.Module):
    """Gated (swiglu/geglu: act(x W_gate) * x W_up) or plain (gelu/relu: act(x W_up)) MLP."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.gated = cfg.mlp in ("swiglu", "geglu")
        self.act = _ACTIVATIONS[cfg.mlp]
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
