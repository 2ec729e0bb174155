"""Llama interop, kept at its old address: see `sinklab.model.convert.llama` (and
`sinklab.model.convert` for every other family)."""

from sinklab.model.convert.llama import (
    check_llama_compatible,
    config_from_llama,
    from_hf_llama,
    to_hf_llama,
)

config_from_hf = config_from_llama  # the old name

__all__ = [
    "check_llama_compatible",
    "config_from_hf",
    "config_from_llama",
    "from_hf_llama",
    "to_hf_llama",
]
