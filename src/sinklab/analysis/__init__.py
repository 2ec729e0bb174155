"""Sink, massive-activation, reference-frame and dormancy metrics: one code path.

    probe = capture(model, input_ids)           # one probe forward, on the CPU
    df = measure(probe, model=model)            # tidy rows: layer, head, metric, value
    records.append_rows(path, records.tag_rows(df, run_id=..., step=...))
    logger.log_metrics(logger_scalars(df))

Definitions of every metric name are in `METRICS` (registry.py); thresholds in
`MetricsConfig`.
"""

from sinklab.analysis import records
from sinklab.analysis.capture import capture, eval_mode
from sinklab.analysis.config import GROUPS, MetricsConfig
from sinklab.analysis.dormancy import dormancy_intervention, dormancy_labels
from sinklab.analysis.frames import FRAME_CLASSES, FRAME_CODE, classify_frames
from sinklab.analysis.measure import COLUMNS, measure
from sinklab.analysis.registry import METRICS, describe, metrics_markdown, template_of
from sinklab.analysis.scalars import logger_scalars

__all__ = [
    "COLUMNS",
    "FRAME_CLASSES",
    "FRAME_CODE",
    "GROUPS",
    "METRICS",
    "MetricsConfig",
    "capture",
    "classify_frames",
    "describe",
    "dormancy_intervention",
    "dormancy_labels",
    "eval_mode",
    "logger_scalars",
    "measure",
    "metrics_markdown",
    "records",
    "template_of",
]
