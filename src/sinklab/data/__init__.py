"""Data for sinklab runs: corpora, tokenizers, windows with loss masks, probe sets.

Lightning-free: `RunData` builds a run's data; the LightningDataModule that wraps it in data
loaders lives in `sinklab.training.datamodule`, so analysis never imports Lightning.
"""

from sinklab.data.config import DataConfig
from sinklab.data.probe_set import ProbeSet, load_probe_set, save_probe_set
from sinklab.data.run_data import RunData
from sinklab.data.synthetic import SyntheticTask, bigram_backcopy_task, tokens_per_second

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
