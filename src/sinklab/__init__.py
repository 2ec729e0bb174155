"""sinklab: how attention sinks and massive activations emerge while small transformers train."""

__version__ = "0.1.0"
