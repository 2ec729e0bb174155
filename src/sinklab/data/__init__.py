"""Data for sinklab runs: corpora, tokenizers, windows with loss masks, probe sets.

Lightning-free: the LightningDataModule that feeds training lives in
`sinklab.training.datamodule`, so analysis of pretrained models never imports Lightning.
"""

from sinklab.data.config import DataConfig
from sinklab.data.probe_set import ProbeSet, load_probe_set, save_probe_set
from sinklab.data.synthetic import SyntheticTask, bigram_backcopy_task, tokens_per_second

__all__ = [
    "DataConfig",
    "ProbeSet",
    "SyntheticTask",
    "bigram_backcopy_task",
    "load_probe_set",
    "save_probe_set",
    "tokens_per_second",
]
