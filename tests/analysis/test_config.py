"""MetricsConfig: the metrics.md defaults, Hydra-style lists, and one-line errors."""

from __future__ import annotations

import pytest

from sinklab.analysis import METRICS, MetricsConfig, metrics_markdown
from sinklab.errors import ConfigError


def test_defaults_follow_metrics_md():
    cfg = MetricsConfig()
    assert (cfg.eps, cfg.sink_keys, cfg.ref_threshold, cfg.massive_abs, cfg.massive_rel) == (
        0.3,
        (0,),
        0.1,
        100.0,
        1000.0,
    )
    assert 0.01 <= cfg.tau <= 0.05
    assert cfg.groups() == (
        "sinks", "qk", "massive", "spikes", "frames", "dormancy", "outliers", "interventions"
    )  # fmt: skip


def test_from_dict_accepts_lists_and_names_bad_keys():
    cfg = MetricsConfig.from_dict({"sink_keys": [0, 3], "frames": False})
    assert cfg.sink_keys == (0, 3) and "frames" not in cfg.groups()
    assert MetricsConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="metrics.epsilon"):
        MetricsConfig.from_dict({"epsilon": 0.3})
    with pytest.raises(ConfigError, match="metrics.eps"):
        MetricsConfig(eps=1.5)
    with pytest.raises(ConfigError, match="metrics.sink_keys"):
        MetricsConfig(sink_keys=[-1])


def test_markdown_table_lists_every_metric():
    lines = metrics_markdown().splitlines()
    assert len(lines) == 2 + len(METRICS)
    assert all(line.count(" | ") == 1 for line in lines[2:])


def test_docs_metric_table_is_the_registry() -> None:
    """docs/metrics.md's table of metric names is `metrics_markdown()` verbatim, so a metric
    added to the registry cannot be missing from the documentation (`make docs` rewrites it)."""
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "metrics.md").read_text()
    assert metrics_markdown().strip() in page, "docs/metrics.md is out of date: run `make docs`"
