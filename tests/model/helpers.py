"""Tiny configs shared by the model tests (CPU, 2 cores: keep them small)."""

from __future__ import annotations

from sinklab.model import ModelConfig
from sinklab.model.config import ATTENTIONS, POSITIONS

SOFTMAX_STYLE = ("softmax", "softmax_off_by_one", "sink_logit", "gated")


def tiny(**overrides) -> ModelConfig:
    """2 layers, d 16, 4 heads over 2 kv heads; init_std large enough that attention is not uniform."""
    values = dict(
        vocab_size=32,
        d_model=16,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        d_ff=24,
        max_seq_len=16,
        init_std=0.3,
    )
    values.update(overrides)
    return ModelConfig(**values)


ALL_VARIANTS = [(pos, att) for pos in POSITIONS for att in ATTENTIONS]
