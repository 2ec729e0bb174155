"""Lightning callbacks: log-spaced checkpoints, the sink/activation probes, throughput."""

from sinklab.training.callbacks.checkpoints import LogSpacedCheckpoint
from sinklab.training.callbacks.probes import ProbeCallback
from sinklab.training.callbacks.throughput import ThroughputMonitor

__all__ = ["LogSpacedCheckpoint", "ProbeCallback", "ThroughputMonitor"]
