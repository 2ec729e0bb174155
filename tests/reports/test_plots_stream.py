"""The streaming position plot: every condition on the same positions and buckets, the
strided recompute oracle included; every line visible; the t = C marker labelled; and on a
real run, per-position NLL re-run on the checkpoint that reproduces the logged buckets."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sinklab.analysis.records import read_rows, tag_rows
from sinklab.reports import plots
from sinklab.reports.figures import stream_nll_at_step, streaming_report


def _labelled_lines(ax) -> dict:
    return {ln.get_label(): ln for ln in ax.get_lines() if not ln.get_label().startswith("_")}


def test_shared_positions_are_where_every_condition_ran() -> None:
    nan = float("nan")
    window = np.arange(16, dtype=float)  # NLL = position, to read the means off
    oracle = np.array([nan, nan, nan, 1.0, nan, nan, nan, 2.0] + [nan, nan, nan, 3.0] * 2)
    x, means, per_bucket = plots.shared_positions({"window": window, "recompute": oracle}, 2)
    assert per_bucket == 2
    np.testing.assert_allclose(x, [5.0, 13.0])  # (3 + 7) / 2, (11 + 15) / 2
    np.testing.assert_allclose(means["window"], [5.0, 13.0])
    np.testing.assert_allclose(means["recompute"], [1.5, 3.0])
    x, means, _ = plots.shared_positions({"window": window}, 4)  # no oracle: every position
    np.testing.assert_allclose(x, [1.5, 5.5, 9.5, 13.5])
    with pytest.raises(ValueError, match="different lengths"):
        plots.shared_positions({"a": window, "b": window[:4]})


def test_shared_position_figure_draws_all_conditions_on_one_x() -> None:
    nan = float("nan")
    rng = np.random.default_rng(0)
    nll = {c: rng.uniform(1, 3, 64) for c in ("dense", "window_shift", "sinks4_shift")}
    nll["recompute"] = np.where(np.arange(64) % 8 == 7, 2.0, nan)
    fig = plots.stream_shared_position_figure(nll, cache_len=16, per_bucket=2)
    (ax,) = fig.axes
    lines = _labelled_lines(ax)
    assert list(lines) == ["dense", "window_shift", "sinks4_shift", "recompute"]
    xs = {tuple(ln.get_xdata()) for ln in lines.values()}
    assert xs == {(11.0, 27.0, 43.0, 59.0)}  # the oracle's positions 7, 15, ... in pairs
    np.testing.assert_allclose(lines["recompute"].get_ydata(), [math.exp(2.0)] * 4)
    np.testing.assert_allclose(
        lines["dense"].get_ydata()[0], math.exp((nll["dense"][7] + nll["dense"][15]) / 2)
    )
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[-1] == "t = C = 16: cache full, first eviction"


def test_every_line_stays_visible_over_an_identical_one() -> None:
    same = np.linspace(1.0, 2.0, 32)
    fig = plots.stream_shared_position_figure({"window": same, "sinks4": same.copy()}, 8)
    first, second = _labelled_lines(fig.axes[0]).values()
    assert first.get_linewidth() > second.get_linewidth()  # the thinner one drawn on top
    assert second.get_zorder() > first.get_zorder()
    assert (first.get_linestyle(), first.get_marker()) != (
        second.get_linestyle(),
        second.get_marker(),
    )


def _bucket_rows(step: int) -> pd.DataFrame:
    """C = 8, 4-token buckets over 32 positions; the oracle strided every 16th token."""
    out = [("stream/cache_len", 8.0), ("stream/bucket_len", 4.0), ("stream/ppl/recompute", 7.5)]
    for j, cond in enumerate(("window_shift", "sinks4_shift")):
        out += [(f"stream/nll/{cond}/at_{i}", 1 + j + i / 100) for i in range(0, 32, 4)]
    out += [(f"stream/nll/recompute/at_{i}", 2.0) for i in (12, 28)]
    df = pd.DataFrame(
        [(-1, -1, m, v) for m, v in out], columns=["layer", "head", "metric", "value"]
    )
    return tag_rows(df, run_id="r", step=step, tokens_seen=step, config_hash="h", checkpoint="")


def test_bucket_rows_keep_a_strided_oracle_off_the_bucket_grid() -> None:
    fig = plots.stream_position_figure(_bucket_rows(10))
    (ax,) = fig.axes
    lines = _labelled_lines(ax)
    assert list(lines) == ["window_shift", "sinks4_shift"]  # no oracle line of single tokens
    assert {tuple(ln.get_xdata()) for ln in lines.values()} == {tuple(np.arange(0, 32, 4) + 1.5)}
    (level,) = ax.collections  # the oracle: its PPL over t >= C as a labelled level
    assert level.get_label() == "recompute: PPL over t >= C at its 2 sampled positions"
    np.testing.assert_allclose(level.get_segments()[0][:, 1], [7.5, 7.5])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [
        "window_shift",
        "sinks4_shift",
        "recompute: PPL over t >= C at its 2 sampled positions",
        "t = C = 8: cache full, first eviction",
    ]


def test_titles_and_axes_use_the_registry_description() -> None:
    assert plots.metric_label("sink/sink1_pct") == "Gu et al.'s Sink_1"
    title = plots.metric_title("sink/first_token_mass", "run1")
    assert title.splitlines() == [
        "Mean over queries t >= 1 of A[t,0], averaged over windows (the same for",
        "causal models and encoders)",
        "[sink/first_token_mass, run1]",
    ]
    assert plots.metric_title("study/renamed") == "[study/renamed]"
    rows = pd.DataFrame(
        {"step": [0, 1], "layer": [-1, -1], "head": [-1, -1], "metric": ["sink/sink1_pct"] * 2}
    ).assign(value=[0.0, 5.0])
    ax = plots.emergence_figure(rows, "sink/sink1_pct").axes[0]
    assert ax.get_ylabel() == "Gu et al.'s Sink_1"
    assert ax.get_title().startswith("Gu et al.'s Sink_1: 100 x the share")


def test_attention_step_grid_labels_query_and_key() -> None:
    maps = {0: [np.eye(4), np.eye(4)], 8: [np.eye(4), np.eye(4)]}
    fig = plots.attention_steps_figure(maps)
    axes = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"][:4]
    assert [ax.get_ylabel() for ax in axes] == [
        "step 0\nquery position",
        "",
        "step 8\nquery position",
        "",
    ]
    assert [ax.get_xlabel() for ax in axes] == ["", "", "key position", "key position"]


def test_a_real_run_redraws_every_condition_on_the_oracle_positions(
    trained_run: Path, tmp_path: Path
) -> None:
    """Per-position NLL re-run on the last checkpoint, bucketed as the callback does, equals
    the logged bucket rows; the report then draws the shared-position figure."""
    rows = read_rows(trained_run / "metrics" / "probes.parquet")
    step = int(rows.loc[rows["metric"].str.startswith("stream/nll/"), "step"].max())
    got = stream_nll_at_step(trained_run, step)
    assert got is not None
    nll, cache_len = got
    logged = rows[rows["step"] == step].set_index("metric")["value"]
    bucket = int(logged["stream/bucket_len"])
    assert cache_len == int(logged["stream/cache_len"])
    assert "recompute" in nll and np.isnan(nll["recompute"]).any()  # strided
    for cond, values in nll.items():
        for start in range(0, len(values), bucket):
            chunk = values[start : start + bucket]
            key = f"stream/nll/{cond}/at_{start}"
            if np.isfinite(chunk).any():
                assert np.nanmean(chunk) == pytest.approx(logged[key], abs=1e-5), key
    written = streaming_report(trained_run, tmp_path, step=step)
    assert written[0].name == f"stream_ppl_by_position_step{step}.png"
    fig = plots.stream_shared_position_figure(nll, cache_len)
    lines = _labelled_lines(fig.axes[0])
    assert "recompute" in lines and len({tuple(ln.get_xdata()) for ln in lines.values()}) == 1
