"""`from_hf`: a transformers model into sinklab's `Transformer`, through its registered family.

Kept apart from the package's `__init__` (which imports every family) so that a family module
may call it without an import cycle.
"""

from __future__ import annotations

from typing import Any

import torch

from sinklab.model.convert.exact import TheirWeights, load_exact
from sinklab.model.convert.registry import family_of
from sinklab.model.transformer import Transformer


def from_hf(hf_model: Any, source: str | None = None) -> Transformer:
    """A sinklab `Transformer` (fp32, eval mode) with exactly the weights of `hf_model`."""
    family = family_of(hf_model.config.model_type)
    cfg = family.config(hf_model.config)
    source = source or f"{family.name} checkpoint"
    theirs = TheirWeights(hf_model.state_dict(), source)
    ours = family.weights(cfg, theirs)
    with torch.device("meta"):
        model = Transformer(cfg)
    model = model.to_empty(device="cpu")  # every parameter is filled below; no buffers exist
    if next(model.buffers(), None) is not None:  # pragma: no cover - a buffer would be garbage
        model = Transformer(cfg)
    if cfg.tie_embeddings:
        model.lm_head.weight = model.tok_emb.weight
    load_exact(model, {k: v.float() for k, v in ours.items()}, theirs)
    return model.float().eval()
