"""The bench's probe-cost rows for the optional parts (outlier metrics, one W8A8 evaluation):
what they report, and that a run without them reports nothing for them."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from sinklab.analysis import MetricsConfig
from sinklab.bench import report
from sinklab.bench.costs import RunProjection
from sinklab.bench.sections import outlier_cost, quant_cost
from sinklab.bench.timing import summarize


def _costs(**extra: object) -> dict:
    projection = RunProjection(100, 4, 4, 1, 0.1, 0.2, 0.0, 0.0)
    base = {
        "projection": projection,
        "probe_windows": [100, 64],
        "probe_pass_s": summarize([0.2]),
        "probe_pass_in_steps": 2.0,
        "probe_in_run_s": 0.25,
        "probe_share": projection.probe_share,
    }
    return {**base, **extra}


def _cells(costs: dict) -> dict[str, str]:
    lines = report.costs_section(costs, 1e6)[2].splitlines()[2:]
    return {ln.split(" | ")[0][2:]: ln.split(" | ")[1].removesuffix(" |") for ln in lines}


def test_cost_rows_show_the_outlier_share_and_the_w8a8_evaluation() -> None:
    costs = _costs(
        probe_pass_no_outliers_s=summarize([0.16]),
        outliers_in_probes=0.25,  # (0.2 - 0.16) / 0.16
        quant_eval_s=summarize([0.5, 0.7, 0.6]),
        quant_in_probes=3.0,
        quant_setup="64 x 128 windows, 4 calibration batches of 32, W8A8, 3 modes",
    )
    cells = _cells(costs)
    outliers = "outlier metrics (a probe pass with them against one without)"
    assert cells[outliers] == "+0.25 probe passes (0.160 s without them; target <= 1)"
    w8a8 = "one W8A8 evaluation (64 x 128 windows, 4 calibration batches of 32, W8A8, 3 modes)"
    assert cells[w8a8] == "0.600 s = 3.00 probe passes (target <= 10 s)"
    assert not any(k.startswith(("outlier", "one W8A8")) for k in _cells(_costs()))


def test_outlier_cost_is_nothing_when_the_group_is_off() -> None:
    run = SimpleNamespace(metrics=MetricsConfig(outliers=False))
    assert outlier_cost(run, torch.nn.Linear(1, 1), None, 0.2, 1) == {}


def test_quant_cost_is_nothing_for_an_encoder() -> None:
    recipe = SimpleNamespace(run=SimpleNamespace(model={"causal": False}))
    assert quant_cost(recipe, torch.nn.Linear(1, 1), 0.2, 1) == {}  # type: ignore[arg-type]
