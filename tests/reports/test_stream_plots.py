"""The streaming figures on hand-made rows: one line per condition at the chosen step, with
the bucket NLL turned back into perplexity; ratios over steps above Sink_1 and the mass."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sinklab.analysis.records import append_rows, tag_rows
from sinklab.reports import plots
from sinklab.reports.figures import streaming_report


def _rows(step: int, scale: float) -> pd.DataFrame:
    """Stream rows of one step: C = 8, buckets of 4 over 16 positions, three conditions."""
    out = [("stream/cache_len", 8.0), ("stream/bucket_len", 4.0)]
    for j, cond in enumerate(("dense", "window_shift", "sinks4_shift")):
        out += [(f"stream/nll/{cond}/at_{i}", scale * (1 + j) + i / 10) for i in range(0, 16, 4)]
    out += [("stream/ratio/window_shift", 3.0 * scale), ("stream/ratio/sinks4_shift", 1.1)]
    out += [("sink/sink1_pct", 50.0 * scale), ("sink/first_token_mass", 0.4 * scale)]
    df = pd.DataFrame(
        [(-1, -1, m, v) for m, v in out], columns=["layer", "head", "metric", "value"]
    )
    return tag_rows(
        df, run_id="r", step=step, tokens_seen=step * 10, config_hash="h", checkpoint=""
    )


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.concat([_rows(0, 0.5), _rows(10, 1.0), _rows(20, 2.0)], ignore_index=True)


def test_position_figure_draws_one_line_per_condition_at_the_step(table: pd.DataFrame) -> None:
    fig = plots.stream_position_figure(table, step=10)
    (ax,) = fig.axes
    lines = {
        line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")
    }
    assert set(lines) == {"dense", "window_shift", "sinks4_shift"}
    x, y = lines["window_shift"].get_data()
    np.testing.assert_allclose(x, [1.5, 5.5, 9.5, 13.5])  # bucket centres
    np.testing.assert_allclose(y, [math.exp(2.0 + i / 10) for i in (0, 4, 8, 12)])
    assert [v for line in ax.get_lines() for v in line.get_xdata()].count(8) >= 1  # t = C
    last = plots.stream_position_figure(table, conditions=["dense"])
    (line,) = [ln for ln in last.axes[0].get_lines() if ln.get_label() == "dense"]
    np.testing.assert_allclose(line.get_ydata()[0], math.exp(2.0))  # step 20 by default
    with pytest.raises(ValueError, match="step 5"):
        plots.stream_position_figure(table, step=5)


def test_need_figure_puts_ratios_over_sink1_and_mass_on_one_x_axis(table: pd.DataFrame) -> None:
    fig = plots.stream_need_figure(table)
    top, bottom, mass = fig.axes
    got = {
        ln.get_label(): ln.get_ydata().tolist()
        for ln in top.get_lines()
        if ln.get_label()[0] != "_"
    }
    assert got == {"R window_shift": [1.5, 3.0, 6.0], "R sinks4_shift": [1.1, 1.1, 1.1]}
    assert bottom.get_lines()[0].get_ydata().tolist() == [25.0, 50.0, 100.0]
    np.testing.assert_allclose(mass.get_lines()[0].get_ydata(), [0.2, 0.4, 0.8])
    assert top.get_shared_x_axes().joined(top, bottom)
    with pytest.raises(ValueError, match="no stream/ratio"):
        plots.stream_need_figure(table, ratios=["window"])


def test_streaming_report_writes_both_pngs(table: pd.DataFrame, tmp_path: Path) -> None:
    run = tmp_path / "run"
    append_rows(run / "metrics" / "probes.parquet", table)
    written = streaming_report(run, run / "figures", step=10)
    assert [p.name for p in written] == [
        "stream_ppl_by_position_step10.png",
        "stream_need_vs_sink.png",
    ]
    assert all(p.stat().st_size > 0 for p in written)
