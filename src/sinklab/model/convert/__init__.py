"""Converters from transformers models into sinklab's `Transformer`, exact or refused.

`from_hf(hf_model)` looks up the family of `config.model_type` (`registry.py`), reads our
config from theirs, maps every tensor and checks nothing is left over on either side
(`exact.py`). `load_hf(folder)` does the same from a local model folder, without remote code.
One module per family; importing this package registers them all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

# Each family module registers itself on import.
from sinklab.model.convert import (  # noqa: F401
    gemma3,
    gpt2,
    gpt_neox,
    llama,
    mistral,
    olmo2,
    opt,
    qwen2,
    qwen3,
)
from sinklab.model.convert.exact import ConversionError
from sinklab.model.convert.loading import from_hf
from sinklab.model.convert.registry import Family, family_of, supported
from sinklab.model.transformer import Transformer

__all__ = [
    "ConversionError",
    "Family",
    "family_of",
    "from_hf",
    "load_hf",
    "supported",
]


def check_config_file(folder: Path) -> dict[str, Any]:
    """The folder's config.json, refused when it needs remote code or names no known family."""
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ConversionError(
            "target", f"{folder}: not a Hugging Face model folder (no config.json)"
        )
    config = json.loads(config_file.read_text())
    if config.get("auto_map"):
        raise ConversionError(
            "trust_remote_code",
            f"{folder}: the model needs its own Python code (auto_map); sinklab never runs "
            "remote code",
        )
    family_of(str(config.get("model_type")))
    return config


def load_hf(folder: str | os.PathLike[str]) -> tuple[Transformer, Any]:
    """(sinklab model, tokenizer) from a local transformers model folder.

    The architecture is checked before any weight is read; weights come from safetensors, or
    from PyTorch .bin files read with `weights_only=True` (transformers' default), never with
    remote code. Converted in fp32 with eager attention, then checked exact.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = Path(folder)
    check_config_file(folder)
    hf = AutoModelForCausalLM.from_pretrained(
        str(folder), dtype=torch.float32, trust_remote_code=False, attn_implementation="eager"
    )
    model = from_hf(hf, source=str(folder))
    del hf
    tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
    return model, tokenizer
