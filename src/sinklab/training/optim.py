"""Optimiser construction: which tensors get weight decay, and the learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from sinklab.training.config import OptimConfig

# Parameter names (suffixes) that behave like embeddings: looked up, not multiplied.
EMBEDDING_LIKE = ("tok_emb.weight", "pos_emb.weight", "sink_tokens", "k_bias", "v_bias")


def decay_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Split parameters into decayed and non-decayed groups, as nanoGPT does.

    Matrices decay; 1-D tensors (norm gains, biases, sink logits) and embedding-like tensors do
    not, unless the config says so. Tied weights appear once (named_parameters de-duplicates).
    """
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith(EMBEDDING_LIKE):
            (decay if cfg.decay_embeddings else no_decay).append(param)
        elif param.ndim < 2:
            (decay if cfg.decay_norms_and_biases else no_decay).append(param)
        else:
            decay.append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    groups = decay_groups(model, cfg)
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps)


def lr_factor(step: int, max_steps: int, cfg: OptimConfig) -> float:
    """Multiplier on the peak learning rate at optimizer step `step` (linear warm-up, then decay)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.schedule == "linear":
        decay = 1.0 - progress
    else:
        decay = 0.5 * (1.0 + math.cos(math.pi * progress))
    return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * decay
