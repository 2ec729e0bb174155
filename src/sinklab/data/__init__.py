"""Data for sinklab runs: corpora, tokenizers, windows with loss masks, probe sets.

Lightning-free: `RunData` builds a run's data; the LightningDataModule that wraps it in data
loaders lives in `sinklab.training.datamodule`, so analysis never imports Lightning.

The names below load on first use (PEP 562), so a shard-preparation worker, which imports
`sinklab.data.shards` only, never imports torch: each worker's memory stays small.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sinklab.data.config import DataConfig
    from sinklab.data.probe_set import ProbeSet, load_probe_set, save_probe_set
    from sinklab.data.run_data import RunData
    from sinklab.data.synthetic import SyntheticTask, bigram_backcopy_task, tokens_per_second

_HOMES = {
    "DataConfig": "sinklab.data.config",
    "ProbeSet": "sinklab.data.probe_set",
    "load_probe_set": "sinklab.data.probe_set",
    "save_probe_set": "sinklab.data.probe_set",
    "RunData": "sinklab.data.run_data",
    "SyntheticTask": "sinklab.data.synthetic",
    "bigram_backcopy_task": "sinklab.data.synthetic",
    "tokens_per_second": "sinklab.data.synthetic",
}

__all__ = [
    "DataConfig",
    "ProbeSet",
    "RunData",
    "SyntheticTask",
    "bigram_backcopy_task",
    "load_probe_set",
    "save_probe_set",
    "tokens_per_second",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'sinklab.data' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)
