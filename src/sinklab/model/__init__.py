"""The configurable Llama-style decoder, its probe path, and the helpers other packages need.

Modules: `config` (ModelConfig), `position` (one object per `model.pos` kind, the RoPE /
ALiBi / sinusoidal primitives, the causal bias), `layers` (norms, MLPs), `attention`
(variants, fused and explicit paths), `transformer` (blocks, the model), `recorder`/`probe`
(the probe cache), `flops` (counts), `convert` (exact converters of nine transformers families, `hf` the Llama
one's old address), `rolling_cache` (long streams in O(C) memory), `pretrained` (SmolLM2 and
Gemma 3 from GGUF).
"""

from sinklab.model.config import ModelConfig
from sinklab.model.flops import flops_per_token, num_params
from sinklab.model.position import alibi_slopes
from sinklab.model.probe import ProbeOutput, name_filter
from sinklab.model.transformer import Block, Transformer, build_model

__all__ = [
    "Block",
    "ModelConfig",
    "ProbeOutput",
    "Transformer",
    "alibi_slopes",
    "build_model",
    "flops_per_token",
    "name_filter",
    "num_params",
]
