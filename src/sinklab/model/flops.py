"""Parameter and FLOP counts, for throughput and MFU reporting."""

from __future__ import annotations

import torch
from torch import nn

from sinklab.model.config import ModelConfig

# Lookup tables: they are indexed, not multiplied, so they cost no FLOPs per token.
_LOOKUP_TABLES = ("tok_emb.weight", "pos_emb.weight", "sink_tokens")


def num_params(model: nn.Module, exclude_embeddings: bool = False) -> int:
    """Number of distinct parameters (a tied matrix counts once).

    With `exclude_embeddings`, the lookup tables are left out: the position embeddings, the
    sink-token prefix, and the token embeddings *unless* they are tied to the LM head. As in
    nanoGPT's `get_num_params`, a tied matrix stays in the count because it also does the
    output projection's matmul on every token.
    """
    lm_head = getattr(model, "lm_head", None)
    head_weight = getattr(lm_head, "weight", None)
    total = 0
    for name, p in model.named_parameters():  # named_parameters yields a shared tensor once
        if exclude_embeddings and name in _LOOKUP_TABLES and p is not head_weight:
            continue
        total += p.numel()
    return total


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token: 6N + 12 * L * H * head_dim * T.

    N is `num_params(model, exclude_embeddings=True)`. 6N counts the forward (2N) and backward
    (4N) multiply-adds of every weight matrix; the second term counts the attention score and
    weighted-sum matmuls, which depend on the context length T (forward 2 * 2 * L * H * hd * T,
    times 3 with the backward pass). This is the estimate of Kaplan et al. (2020) and the PaLM
    paper's appendix B, as used by nanoGPT's `estimate_mfu`.
    """
    from sinklab.model.transformer import Transformer  # local: transformer imports this package

    with torch.device("meta"):
        model = Transformer(cfg)
    n = num_params(model, exclude_embeddings=True)
    return 6.0 * n + 12.0 * cfg.n_layers * cfg.n_heads * cfg.head_dim * seq_len
