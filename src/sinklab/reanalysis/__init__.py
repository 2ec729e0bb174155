"""Reanalysis: re-measure runs, sweeps, checkpoints and pretrained models with the probe
callback's own code path, and turn the tables into figures.

    cfg = config.from_mapping({"target": "outputs/runs/<run>"})
    reports = runner.analyze(cfg)       # rows in <run>/metrics/reanalysis.parquet (+ .csv)
"""

from sinklab.reanalysis.config import AnalyzeConfig, from_mapping
from sinklab.reanalysis.runner import (
    ReanalysisWarning,
    Report,
    analyze,
    analyze_pretrained,
    analyze_run,
)

__all__ = [
    "AnalyzeConfig",
    "ReanalysisWarning",
    "Report",
    "analyze",
    "analyze_pretrained",
    "analyze_run",
    "from_mapping",
]
