"""Capture + measure on a saved probe set: the first step of every probe pass
(`probe_pass.run_probe_pass`), so the callback, the reanalysis script and the pretrained-model
report agree exactly; and the attention maps their pictures are drawn from."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from sinklab.analysis.capture import capture
from sinklab.analysis.config import MetricsConfig
from sinklab.analysis.measure import measure
from sinklab.data.probe_set import ProbeSet
from sinklab.model.probe import ProbeOutput

MEASURE_ON = ("host", "device")


def measure_probe_set(
    model: torch.nn.Module,
    probe_set: ProbeSet,
    metrics_cfg: MetricsConfig | None = None,
    *,
    batch_size: int = 25,
    device: torch.device | str | None = None,
    measure_on: str = "host",
) -> tuple[pd.DataFrame, ProbeOutput]:
    """Tidy metric rows (layer, head, metric, value) for `model` on `probe_set`, plus the capture.

    `measure_on`: "host" copies the captured tensors to the CPU and measures there (the
    reference path: on a CPU run both are the same); "device" keeps them where the model ran
    and measures there, so on a GPU the metric maths (medians, top-k, eigen-decompositions)
    runs on the GPU and only the final rows cross to the host."""
    metrics_cfg = metrics_cfg or MetricsConfig()
    if measure_on not in MEASURE_ON:
        raise ValueError(f"measure_on must be one of {MEASURE_ON}, got {measure_on!r}")
    keep = measure_on == "device"
    probe = capture(
        model, probe_set.input_ids, batch_size=batch_size, device=device, keep_on_device=keep
    )
    trigger_mask = probe_set.trigger_mask
    if keep and trigger_mask is not None:
        trigger_mask = trigger_mask.to(probe.logits.device)
    rows = measure(
        probe,
        model=model,
        cfg=metrics_cfg,
        trigger_mask=trigger_mask,
        bos_present=probe_set.has_bos,
        input_ids=probe_set.input_ids,
    )
    return rows, probe


def head_averaged_patterns(
    probe: ProbeOutput, layers: Sequence[int] | None = None
) -> list[np.ndarray]:
    """Per layer (all, or `layers`), the attention pattern averaged over windows and heads
    ([T, E + T]); layers the probe did not capture are skipped. Arrays, not pictures, so
    reanalysis keeps maps without importing the plotting code."""
    maps = []
    for layer in range(probe.n_layers) if layers is None else layers:
        name = f"blocks.{layer}.attn.pattern"
        if name in probe:
            maps.append(probe[name].float().mean(dim=(0, 1)).cpu().numpy())
    return maps
