"""Figures shared by the probe callback (W&B images) and the reanalysis scripts (PNG files).

Matplotlib runs headless (Agg); every function returns a Figure so callers decide where it
goes (`save_figure` for a PNG, `figure_to_image` for W&B). Functions that take a table
expect the tidy metric rows of `sinklab.analysis.records` (step, layer, head, metric,
value, ...); curves use the aggregate rows (head == -1: layer rows, and layer == -1 for the
whole model), as `logger_scalars` does.
"""

from __future__ import annotations

import io
import math
import re
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from sinklab.analysis import names  # noqa: E402

X_LABELS = {"step": "training step", "tokens_seen": "tokens seen"}
MASSIVE_CURVES = (
    (names.TOP1, "o-", "top-1"),
    (names.TOP2, "s-", "top-2"),
    (names.TOP3, "^-", "top-3"),
    (names.MEDIAN, "x--", "median"),
)


def metric_description(metric: str) -> str:
    """The registry's one-sentence definition (`sinklab.analysis.registry`); the name itself
    for a metric the registry does not know (a study's renamed copy, say)."""
    from sinklab.analysis.registry import describe

    try:
        return describe(metric)
    except KeyError:
        return metric


def metric_label(metric: str, limit: int = 44) -> str:
    """An axis label: the definition's first clause (up to its first ':' or ';'), shortened
    to `limit` characters."""
    head = re.split(r"[:;] ", metric_description(metric), maxsplit=1)[0].strip().rstrip(".")
    return textwrap.shorten(head, limit, placeholder="...")


def metric_title(metric: str, where: str = "", width: int = 72) -> str:
    """A title: the whole definition wrapped to `width` (three lines at most), then the
    metric's name and `where` (a run, a layer) in brackets, so it can be looked up."""
    text = metric_description(metric).rstrip(".")
    lines = textwrap.wrap(text, width, max_lines=3, placeholder="...") if text != metric else []
    tag = ", ".join(part for part in (metric, where) if part)
    return "\n".join([*lines, f"[{tag}]"])


def attention_maps_figure(
    maps: Sequence[np.ndarray],
    title: str = "",
    max_cols: int = 4,
    layer_labels: Sequence[int] | None = None,
) -> plt.Figure:
    """One heatmap per layer (query rows, key columns), on a shared colour scale.

    `layer_labels` names the panels when `maps` is a subset of the layers.
    """
    n = max(1, len(maps))
    cols = min(max_cols, n)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(
        rows,
        cols,
        figsize=(3.0 * cols + 0.8, 2.8 * rows + 0.4),
        squeeze=False,
        layout="constrained",
    )
    vmax = max((float(m.max()) for m in maps), default=1.0)
    im = None
    for i, ax in enumerate(axes.flat):
        if i >= len(maps):
            ax.axis("off")
            continue
        im = ax.imshow(
            maps[i], cmap="viridis", vmin=0.0, vmax=vmax, aspect="auto", interpolation="nearest"
        )
        ax.set_title(f"layer {layer_labels[i] if layer_labels else i}", fontsize=9)
        ax.set_xlabel("key position", fontsize=8)
        ax.set_ylabel("query position", fontsize=8)
        ax.tick_params(labelsize=7)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def attention_steps_figure(
    maps_by_step: Mapping[int, Sequence[np.ndarray]],
    title: str = "",
    layer_labels: Sequence[int] | None = None,
    row_label: str = "step {}",
) -> plt.Figure:
    """Head-averaged maps as a grid: one row per training step, one column per layer.

    One colour scale per row's maximum would hide the sink's growth; a shared scale shows it.
    `layer_labels` names the columns when the maps are a subset of the layers.
    """
    steps = sorted(maps_by_step)
    n_layers = max((len(maps_by_step[s]) for s in steps), default=1)
    fig, axes = plt.subplots(
        max(1, len(steps)),
        n_layers,
        figsize=(2.2 * n_layers + 1.2, 2.0 * max(1, len(steps)) + 0.4),
        squeeze=False,
        layout="constrained",
    )
    vmax = max((float(m.max()) for s in steps for m in maps_by_step[s]), default=1.0)
    im = None
    for r, step in enumerate(steps):
        for c in range(n_layers):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(maps_by_step[step]):
                ax.axis("off")
                continue
            im = ax.imshow(
                maps_by_step[step][c],
                cmap="viridis",
                vmin=0.0,
                vmax=vmax,
                aspect="auto",
                interpolation="nearest",
            )
            if r == 0:
                ax.set_title(f"layer {layer_labels[c] if layer_labels else c}", fontsize=9)
            if c == 0:
                head = f"{row_label.format(step)}\n" if row_label else ""
                ax.set_ylabel(f"{head}query position", fontsize=8)
            if r == len(steps) - 1:
                ax.set_xlabel("key position", fontsize=8)
    if im is not None:
        fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="attention")
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def aggregate_curve(
    df: pd.DataFrame, metric: str, layer: int = -1, x: str = "step"
) -> pd.DataFrame:
    """(x, value) of one metric's aggregate row (head == -1) for one layer (-1: model), by x."""
    part = df[(df["metric"] == metric) & (df["head"] == -1) & (df["layer"] == layer)]
    return part[[x, "value"]].groupby(x, as_index=False)["value"].mean().sort_values(x)


def _x_axis(ax: plt.Axes, x: str, logx: bool) -> None:
    if logx:
        # symlog keeps step 0 (the initialisation) on the axis, where log would drop it
        ax.set_xscale("symlog", linthresh=1.0 if x == "step" else 1e3)
    ax.set_xlabel(X_LABELS.get(x, x) + (" (log)" if logx else ""))


def emergence_figure(
    df: pd.DataFrame, metric: str, x: str = "step", logx: bool = False, title: str = ""
) -> plt.Figure:
    """A metric against step or tokens: one line per layer, the model aggregate in black."""
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    layers = sorted(
        int(v) for v in df.loc[(df["metric"] == metric) & (df["head"] == -1), "layer"].unique()
    )
    if not layers:
        raise ValueError(f"no aggregate rows for metric {metric!r}")
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, max(1, len([v for v in layers if v >= 0]))))
    for i, layer in enumerate(v for v in layers if v >= 0):
        curve = aggregate_curve(df, metric, layer, x)
        ax.plot(
            curve[x], curve["value"], "o-", ms=3, lw=1.2, color=colors[i], label=f"layer {layer}"
        )
    if -1 in layers:
        curve = aggregate_curve(df, metric, -1, x)
        ax.plot(curve[x], curve["value"], "k--", lw=1.6, label="all layers")
    _x_axis(ax, x, logx)
    ax.set_ylabel(metric_label(metric), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2 if len(layers) > 6 else 1)
    ax.set_title(title or metric_title(metric), fontsize=8)
    fig.tight_layout()
    return fig


def layer_step_heatmap(
    df: pd.DataFrame, metric: str, title: str = "", x: str = "step"
) -> plt.Figure:
    """Layer (rows) x checkpoint (columns) of a per-layer aggregate; columns evenly spaced."""
    part = df[(df["metric"] == metric) & (df["head"] == -1) & (df["layer"] >= 0)]
    if not len(part):
        raise ValueError(f"no layer rows for metric {metric!r}")
    grid = part.pivot_table(index="layer", columns=x, values="value", aggfunc="mean").sort_index()
    fig, ax = plt.subplots(
        figsize=(max(4.0, 0.35 * grid.shape[1] + 2.0), max(2.4, 0.3 * grid.shape[0] + 1.4))
    )
    im = ax.imshow(
        grid.to_numpy(), aspect="auto", cmap="magma", origin="lower", interpolation="nearest"
    )
    ax.set_xticks(range(grid.shape[1]))
    ax.set_xticklabels([str(int(c)) for c in grid.columns], rotation=60, fontsize=7)
    ax.set_yticks(range(grid.shape[0]))
    ax.set_yticklabels([str(int(i)) for i in grid.index], fontsize=7)
    ax.set_xlabel(X_LABELS.get(x, x))
    ax.set_ylabel("layer")
    fig.colorbar(im, ax=ax, label=metric_label(metric, 36))
    ax.set_title(title or metric_title(metric), fontsize=8)
    fig.tight_layout()
    return fig


def activation_profile_figure(
    rows: pd.DataFrame, title: str = "", step: int | None = None
) -> plt.Figure:
    """Sun et al.'s picture: top-1/2/3 and median |h| per layer, log scale.

    `rows` may hold several steps: `step` picks one (default: the last one in the table).
    """
    if "step" in rows.columns and len(rows):
        rows = rows[rows["step"] == (rows["step"].max() if step is None else step)]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for metric, style, label in MASSIVE_CURVES:
        part = rows[
            (rows["metric"] == metric) & (rows["head"] == -1) & (rows["layer"] >= 0)
        ].sort_values("layer")
        if len(part):
            ax.plot(part["layer"], part["value"], style, ms=4, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("layer (residual stream after the block)")
    ax.set_ylabel("|activation|")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def layer_profile_figure(
    rows: pd.DataFrame, metric: str, title: str = "", step: int | None = None
) -> plt.Figure:
    """One metric's layer rows (head == -1) against depth, at one step (default: the last):
    where in the network a pretrained model's sink sits."""
    if "step" in rows.columns and len(rows):
        rows = rows[rows["step"] == (rows["step"].max() if step is None else step)]
    part = rows[
        (rows["metric"] == metric) & (rows["head"] == -1) & (rows["layer"] >= 0)
    ].sort_values("layer")
    if not len(part):
        raise ValueError(f"no layer rows for metric {metric!r}")
    fig, ax = plt.subplots(figsize=(5, 3.0))
    ax.bar(part["layer"], part["value"], color="tab:blue")
    model = rows[(rows["metric"] == metric) & (rows["head"] == -1) & (rows["layer"] == -1)]
    if len(model):
        ax.axhline(float(model["value"].iloc[0]), color="k", ls="--", lw=1.2, label="all layers")
        ax.legend(fontsize=8)
    ax.set_xlabel("layer")
    ax.set_ylabel(metric_label(metric), fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    ax.set_title(title or metric_title(metric), fontsize=8)
    fig.tight_layout()
    return fig


def sweep_figure(
    curves: pd.DataFrame, metric: str, by: str, x: str = "step", logx: bool = False, title: str = ""
) -> plt.Figure:
    """Curves of several runs grouped by a config value: the mean over a group's seeds as a
    line, their min-max spread as a band (no band for a group of one run).

    `curves` has columns group, run, `x`, value (one row per run and x).
    """
    fig, ax = plt.subplots(figsize=(5.4, 3.5))
    groups = sorted(curves["group"].astype(str).unique())
    colors = plt.cm.tab10(np.arange(len(groups)) % 10)
    for color, group in zip(colors, groups, strict=True):
        part = curves[curves["group"].astype(str) == group]
        stats = part.groupby(x)["value"].agg(["mean", "min", "max"]).sort_index()
        n = part["run"].nunique()
        ax.plot(
            stats.index,
            stats["mean"],
            "o-",
            ms=3,
            lw=1.4,
            color=color,
            label=(f"{by}={group}" if by else group) + (f" (n={n})" if n > 1 else ""),
        )
        if n > 1:
            ax.fill_between(stats.index, stats["min"], stats["max"], color=color, alpha=0.2, lw=0)
    _x_axis(ax, x, logx)
    ax.set_ylabel(metric_label(metric), fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(title or metric_title(metric, f"by {by}" if by else ""), fontsize=8)
    fig.tight_layout()
    return fig


def sweep_panels_figure(
    panels: Sequence[tuple[str, pd.DataFrame]],
    x: str = "step",
    logx: bool = True,
    title: str = "",
) -> plt.Figure:
    """Several metrics of a sweep stacked on one shared x axis, so a reader sees whether they
    move together (the sink, the outliers, the int8 damage): one panel per (label, curves),
    `curves` as in `sweep_figure` (group, run, x, value), one colour per group throughout,
    the mean over a group's seeds as a line. Empty panels are left out; none is a ValueError."""
    panels = [(label, curves) for label, curves in panels if len(curves)]
    if not panels:
        raise ValueError("no curves to draw")
    groups = sorted({str(g) for _, curves in panels for g in curves["group"].unique()})
    colors = dict(zip(groups, plt.cm.tab10(np.arange(len(groups)) % 10), strict=True))
    # more than 4 groups: the legend goes below the panels, where it hides no curve
    below = len(groups) > 4
    legend_h = 0.15 * math.ceil(len(groups) / 2) + 0.1 if below else 0.0
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(6.2, 1.9 * len(panels) + 0.8 + legend_h),
        sharex=True,
        squeeze=False,
    )
    for ax, (label, curves) in zip(axes[:, 0], panels, strict=True):
        for group in groups:
            part = curves[curves["group"].astype(str) == group]
            if not len(part):
                continue
            mean = part.groupby(x)["value"].mean().sort_index()
            ax.plot(mean.index, mean.values, "o-", ms=2.5, lw=1.2, color=colors[group], label=group)
        ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    _x_axis(axes[-1, 0], x, logx)
    axes[0, 0].set_title(title, fontsize=10)
    if below:
        handles, labels = axes[0, 0].get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=7, ncol=2, loc="lower center", frameon=False)
        fig.tight_layout(rect=(0.0, legend_h / fig.get_figheight(), 1.0, 1.0))
    else:
        axes[0, 0].legend(fontsize=6, ncol=4, loc="upper left")
        fig.tight_layout()
    return fig


_STREAM_NLL = re.compile(r"^stream/nll/(?P<cond>[^/]+)/at_(?P<start>\d+)$")
STREAM_RATIOS = ("window_shift", "sinks4_shift")  # R_win and R_4, StreamingLLM's positions


def _model_value(df: pd.DataFrame, metric: str) -> float | None:
    rows = df.loc[(df["metric"] == metric) & (df["layer"] == -1) & (df["head"] == -1), "value"]
    return float(rows.iloc[0]) if len(rows) else None


def _stream_buckets(df: pd.DataFrame, step: int) -> pd.DataFrame:
    """The `stream/nll/{cond}/at_{i}` rows at `step` with their condition and bucket start."""
    at_step = df[df["step"] == step] if "step" in df.columns else df
    parsed = at_step["metric"].str.extract(_STREAM_NLL)
    at = at_step.assign(cond=parsed["cond"], start=pd.to_numeric(parsed["start"]))
    return at.dropna(subset=["cond"])


# Condition lines drawn thick-to-thin and solid-to-dashed, each with its own marker, so a line
# lying exactly on another (the window and the 4-sink cache before their first eviction)
# still shows under it.
_LINE_STYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def stream_line_style(i: int) -> dict[str, Any]:
    """The i-th condition's line: colour, dash, marker, width (decreasing), z-order."""
    return {
        "color": f"C{i % 10}",
        "ls": _LINE_STYLES[i % len(_LINE_STYLES)],
        "marker": _MARKERS[i % len(_MARKERS)],
        "ms": 3.5,
        "lw": max(0.9, 2.8 - 0.45 * i),
        "zorder": 3 + i,
    }


def _stream_axes(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]],
    cache: float | None,
    ylabel: str,
    title: str,
) -> plt.Figure:
    """Perplexity against position, one labelled line per (label, x, mean NLL)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.9))
    for i, (label, x, nll) in enumerate(curves):
        ax.plot(x, np.exp(nll), label=label, **stream_line_style(i))
    if cache is not None:
        ax.axvline(cache, color="0.4", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("stream position t (query)")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.grid(alpha=0.3, which="both")
    _stream_legend(ax, cache)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def _stream_legend(ax: plt.Axes, cache: float | None) -> None:
    """The conditions' legend, with an entry for the dotted t = C line (a proxy handle, so
    the axes' own lines stay one per condition)."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    if cache is not None:
        handles.append(Line2D([], [], color="0.4", ls=":", lw=1))
        labels.append(f"t = C = {cache:g}: cache full, first eviction")
    ax.legend(handles, labels, fontsize=7, ncol=2)


def stream_position_figure(
    df: pd.DataFrame,
    step: int | None = None,
    conditions: Sequence[str] | None = None,
    title: str = "",
) -> plt.Figure:
    """Perplexity against stream position from the logged `stream/nll/{cond}/at_{i}` bucket
    rows at `step` (None: the last step with them), every condition on the same buckets.

    A condition measured at fewer positions than the buckets hold (the recompute oracle runs
    every `recompute_stride`-th token) has single tokens where the others have bucket means,
    so it is not drawn on the buckets: it gets a horizontal line at its perplexity over t >= C
    (`stream/ppl/{cond}`), labelled so. `stream_shared_position_figure` draws every condition,
    the oracle included, on exactly the oracle's positions, from per-position NLL."""
    rows = df[df["metric"].str.startswith("stream/nll/")]
    if step is None:
        if not len(rows):
            raise ValueError("no stream/nll rows: the streaming evaluation did not run")
        step = int(rows["step"].max())
    at = _stream_buckets(df, step)
    if not len(at):
        raise ValueError(f"no stream/nll rows at step {step}")
    at_step = df[df["step"] == step] if "step" in df.columns else df
    bucket = _model_value(at_step, "stream/bucket_len") or 1.0
    cache = _model_value(at_step, "stream/cache_len")
    present = list(dict.fromkeys(at["cond"]))
    chosen = [c for c in (conditions or present) if c in present]
    if not chosen:
        raise ValueError(f"none of the conditions {list(conditions or [])} at step {step}")
    starts = {c: set(at.loc[at["cond"] == c, "start"].astype(int)) for c in chosen}
    full = max(len(v) for v in starts.values())
    dense = [c for c in chosen if len(starts[c]) == full]
    grid = sorted(set.intersection(*(starts[c] for c in dense)))
    curves = []
    for cond in dense:
        part = at[(at["cond"] == cond) & at["start"].isin(grid)].sort_values("start")
        x = part["start"].to_numpy(float) + (bucket - 1) / 2  # the bucket's centre
        curves.append((cond, x, part["value"].to_numpy(float)))
    fig = _stream_axes(
        curves,
        cache,
        f"perplexity (mean NLL over {bucket:g}-token buckets)",
        title or f"streaming perplexity, step {step}",
    )
    ax = fig.axes[0]
    for i, cond in enumerate(c for c in chosen if c not in dense):
        ppl = _model_value(at_step, f"stream/ppl/{cond}")
        if ppl is None:
            sampled = at[(at["cond"] == cond) & (at["start"] >= (cache or 0))]["value"]
            ppl = float(np.exp(sampled.mean())) if len(sampled) else None
        if ppl is None:
            continue
        style = stream_line_style(len(dense) + i)
        ax.hlines(
            ppl,
            cache or 0.0,
            max(grid) + bucket if grid else (cache or 0.0) + bucket,
            colors=style["color"],
            linestyles="--",
            lw=1.6,
            label=f"{cond}: PPL over t >= C at its {len(starts[cond])} sampled positions",
        )
    _stream_legend(ax, cache)
    return fig


def shared_positions(
    nll: Mapping[str, np.ndarray], per_bucket: int | None = None
) -> tuple[np.ndarray, dict[str, np.ndarray], int]:
    """Every condition on the same query positions and buckets: the positions where all of
    them have an NLL (the oracle's strided ones, when it is among them), grouped in runs of
    `per_bucket` consecutive such positions (None: about 32 buckets). Returns each bucket's
    mean position, each condition's mean NLL per bucket, and `per_bucket`."""
    if not nll:
        raise ValueError("no conditions to draw")
    values = {c: np.asarray(v, dtype=float) for c, v in nll.items()}
    lengths = {len(v) for v in values.values()}
    if len(lengths) != 1:
        raise ValueError(f"per-position NLL of different lengths: {sorted(lengths)}")
    positions = np.flatnonzero(np.logical_and.reduce([np.isfinite(v) for v in values.values()]))
    if not len(positions):
        raise ValueError("no query position where every condition has an NLL")
    per_bucket = per_bucket or max(1, len(positions) // 32)
    edges = np.arange(0, len(positions), per_bucket)
    counts = np.diff(np.append(edges, len(positions)))
    x = np.add.reduceat(positions.astype(float), edges) / counts
    means = {c: np.add.reduceat(v[positions], edges) / counts for c, v in values.items()}
    return x, means, per_bucket


def stream_shared_position_figure(
    nll: Mapping[str, np.ndarray],
    cache_len: int | None = None,
    per_bucket: int | None = None,
    title: str = "",
) -> plt.Figure:
    """Perplexity against stream position from per-position NLL (`StreamNLL.nll`, NaN where a
    condition did not run): every condition, the oracle included, on the same positions and
    buckets (`shared_positions`)."""
    x, means, per_bucket = shared_positions(nll, per_bucket)
    curves = [(cond, x, means[cond]) for cond in nll]
    ylabel = f"perplexity (mean NLL over {per_bucket} shared positions)"
    return _stream_axes(curves, cache_len, ylabel, title or "streaming perplexity")


def stream_need_figure(
    df: pd.DataFrame,
    ratios: Sequence[str] = STREAM_RATIOS,
    x: str = "step",
    logx: bool = True,
    title: str = "",
) -> plt.Figure:
    """Does the need for a sink arrive with the sink? Top panel: the ratios to the oracle
    (`stream/ratio/{cond}`, R_win and R_4 by default); bottom panel, same x axis: Sink_1 and,
    on a second y axis, the first-token mass (model rows). Ratios that were not measured are
    left out; none at all is a ValueError."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(5.6, 5.2), sharex=True)
    drawn = 0
    for cond in ratios:
        curve = aggregate_curve(df, f"stream/ratio/{cond}", -1, x)
        if len(curve):
            top.plot(curve[x], curve["value"], "o-", ms=3, lw=1.3, label=f"R {cond}")
            drawn += 1
    if not drawn:
        plt.close(fig)
        raise ValueError(f"no stream/ratio rows for {list(ratios)}")
    top.axhline(1.0, color="0.4", ls=":", lw=1)
    top.set_ylabel("PPL / PPL(recompute)")
    top.grid(alpha=0.3)
    top.legend(fontsize=7)
    sink = aggregate_curve(df, names.SINK1, -1, x)
    bottom.plot(sink[x], sink["value"], "o-", ms=3, lw=1.3, color="C3", label="Sink_1 (%)")
    bottom.set_ylabel("Sink_1 (%)", color="C3")
    mass_ax = bottom.twinx()
    mass = aggregate_curve(df, names.FIRST_TOKEN_MASS, -1, x)
    mass_ax.plot(mass[x], mass["value"], "s--", ms=3, lw=1.2, color="C2", label="first-token mass")
    mass_ax.set_ylabel("first-token mass", color="C2")
    bottom.grid(alpha=0.3)
    _x_axis(bottom, x, logx)
    top.set_title(title or "streaming need vs the sink", fontsize=10)
    fig.tight_layout()
    return fig


def save_figure(fig: plt.Figure, path: Path | str, dpi: int = 90) -> Path:
    """Write a PNG (folder created) and free the figure; small dpi keeps committed PNGs small."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def attention_maps_image(maps: Sequence[np.ndarray], scale: int = 4, gap: int = 4) -> np.ndarray:
    """The per-layer maps side by side as one RGB array (uint8), shared colour scale.

    A colormap lookup and an upscale, no figure: about a millisecond, so the probe callback can
    send an image to W&B at every probe (a matplotlib figure cost ~0.7 s, more than the probe).
    """
    vmax = max((float(m.max()) for m in maps), default=1.0) or 1.0
    tiles = []
    for m in maps:
        rgb = (plt.get_cmap("viridis")(np.clip(m / vmax, 0.0, 1.0))[..., :3] * 255).astype(np.uint8)
        tiles.append(np.kron(rgb, np.ones((scale, scale, 1), dtype=np.uint8)))
    if not tiles:
        return np.zeros((1, 1, 3), dtype=np.uint8)
    height = max(t.shape[0] for t in tiles)
    spacer = np.full((height, gap, 3), 255, dtype=np.uint8)
    row: list[np.ndarray] = []
    for tile in tiles:
        padded = np.full((height, tile.shape[1], 3), 255, dtype=np.uint8)
        padded[: tile.shape[0]] = tile
        row += [padded, spacer]
    return np.concatenate(row[:-1], axis=1)


def figure_to_image(fig: plt.Figure) -> Any:
    """Render to a PIL image (what wandb.Image takes) and free the figure."""
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
