"""Capture + measure on a saved probe set: the one call the probe callback, the reanalysis
script and the pretrained-model report all make, so their numbers agree exactly."""

from __future__ import annotations

import pandas as pd
import torch

from sinklab.analysis.capture import capture
from sinklab.analysis.config import MetricsConfig
from sinklab.analysis.measure import measure
from sinklab.data.probe_set import ProbeSet
from sinklab.model.probe import ProbeOutput


def measure_probe_set(
    model: torch.nn.Module,
    probe_set: ProbeSet,
    metrics_cfg: MetricsConfig | None = None,
    *,
    batch_size: int = 25,
    device: torch.device | str | None = None,
) -> tuple[pd.DataFrame, ProbeOutput]:
    """Tidy metric rows (layer, head, metric, value) for `model` on `probe_set`, plus the capture."""
    metrics_cfg = metrics_cfg or MetricsConfig()
    probe = capture(model, probe_set.input_ids, batch_size=batch_size, device=device)
    rows = measure(
        probe,
        model=model,
        cfg=metrics_cfg,
        trigger_mask=probe_set.trigger_mask,
        bos_present=probe_set.has_bos,
        input_ids=probe_set.input_ids,
    )
    return rows, probe
