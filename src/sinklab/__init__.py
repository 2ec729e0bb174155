"""sinklab: how attention sinks and massive activations emerge while small transformers train."""

import os

from omegaconf import OmegaConf

__version__ = "0.1.0"

# `${launch_dir:}` in conf/: the folder a command was started from, as an absolute path. Unlike
# `${hydra:runtime.cwd}` it also resolves before Hydra sets its runtime (the multirun sweep dir).
if not OmegaConf.has_resolver("launch_dir"):
    OmegaConf.register_new_resolver("launch_dir", os.getcwd, use_cache=True)
