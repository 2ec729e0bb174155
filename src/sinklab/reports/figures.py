"""Figures from run tables: what scripts/plot_emergence.py and scripts/compare_sweep.py draw.

Tables are read from disk (the callback's `probes.parquet` or the reanalysis table), so a
figure can be redrawn at any time without touching a model; only the attention maps at
chosen steps load checkpoints (one at a time, attention patterns only).
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from sinklab.analysis import names
from sinklab.analysis.capture import capture
from sinklab.analysis.pipeline import head_averaged_patterns
from sinklab.analysis.records import read_rows
from sinklab.analysis.streaming import StreamConfig, stream_nll
from sinklab.data.probe_set import load_probe_set
from sinklab.data.run_data import load_stream_ids
from sinklab.errors import ConfigError
from sinklab.reports import plots
from sinklab.runs.checkpoints import list_checkpoints, load_checkpoint_model
from sinklab.runs.layout import TABLES, RunLayout, is_run_dir, job_dirs

DEFAULT_METRICS = (names.SINK1, names.FIRST_TOKEN_MASS, names.TOP1_OVER_MEDIAN)


def run_table(run_dir: Path, table: str = "probes") -> pd.DataFrame:
    """The metric rows of a run: `probes` (logged while training) or `reanalysis`. A folder
    with no training table but a reanalysis one (a hub trajectory measured by sinklab-analyze)
    is read through its reanalysis table."""
    if table not in TABLES:
        raise ConfigError("table", f"{table!r} is not allowed; choose one of: {', '.join(TABLES)}")
    layout = RunLayout(run_dir)
    path = layout.table(table)
    if table == "probes" and not path.is_file() and layout.table("reanalysis").is_file():
        path = layout.table("reanalysis")
    if not path.is_file():
        raise ConfigError("table", f"no {TABLES[table]} in {layout.metrics_dir}")
    return read_rows(path)


def slug(metric: str) -> str:
    """A file-name-safe form of a metric name (`sink/sink1_pct` -> `sink-sink1_pct`)."""
    return metric.replace("/", "-")


def attention_maps_at_steps(
    run_dir: Path, steps: Sequence[int], batch_size: int = 25
) -> dict[int, list]:
    """Head-averaged attention maps of the run's probe set at the checkpoints nearest `steps`."""
    ckpts = list_checkpoints(Path(run_dir))
    if not ckpts:
        raise ConfigError("steps", f"{run_dir} has no checkpoints")
    probe_set = load_probe_set(Path(run_dir))
    maps: dict[int, list] = {}
    for want in steps:
        ckpt = min(ckpts, key=lambda c: abs(c.step - want))
        if ckpt.step in maps:
            continue
        model, _ = load_checkpoint_model(ckpt.path)
        probe = capture(
            model,
            probe_set.input_ids,
            batch_size=batch_size,
            names=lambda n: n.endswith("attn.pattern"),
        )
        maps[ckpt.step] = head_averaged_patterns(probe)
        del model, probe
        gc.collect()
    return maps


def emergence_report(
    run_dir: Path,
    out_dir: Path,
    metrics: Sequence[str] = DEFAULT_METRICS,
    x: str = "step",
    logx: bool = True,
    map_steps: Sequence[int] = (),
    table: str = "probes",
    dpi: int = 90,
) -> list[Path]:
    """Emergence curves and layer x step heatmaps per metric, the massive-activation profile
    at the last step, and (if `map_steps`) attention maps at those steps."""
    df = run_table(run_dir, table)
    name = Path(run_dir).name
    written = []
    for metric in metrics:
        written.append(
            plots.save_figure(
                plots.emergence_figure(
                    df, metric, x=x, logx=logx, title=plots.metric_title(metric, name)
                ),
                out_dir / f"emergence_{slug(metric)}.png",
                dpi,
            )
        )
        if ((df["metric"] == metric) & (df["head"] == -1) & (df["layer"] >= 0)).any():
            written.append(
                plots.save_figure(
                    plots.layer_step_heatmap(
                        df, metric, title=plots.metric_title(metric, f"by layer, {name}")
                    ),
                    out_dir / f"heatmap_{slug(metric)}.png",
                    dpi,
                )
            )
    last = int(df["step"].max())
    written.append(
        plots.save_figure(
            plots.activation_profile_figure(
                df, title=f"residual |h| per layer, step {last}", step=last
            ),
            out_dir / "massive_profile.png",
            dpi,
        )
    )
    if map_steps:
        maps = attention_maps_at_steps(run_dir, map_steps)
        written.append(
            plots.save_figure(
                plots.attention_steps_figure(maps, title="head-averaged attention"),
                out_dir / "attention_maps.png",
                dpi,
            )
        )
    return written


def stream_nll_at_step(run_dir: Path, step: int) -> tuple[dict[str, np.ndarray], int] | None:
    """Per-position NLL [T-1] of every condition of the run's own streaming evaluation (its
    saved `callbacks.probe.stream` and stream) on the checkpoint of `step` (NaN where a
    condition did not run), and C; None when the run has no checkpoint at that step, no
    saved stream, or no streaming section."""
    layout = RunLayout(run_dir)
    ckpt = next((c for c in list_checkpoints(Path(run_dir)) if c.step == step), None)
    if ckpt is None or not layout.stream_ids.is_file() or not layout.hydra_config.is_file():
        return None
    saved = OmegaConf.load(layout.hydra_config)
    section = OmegaConf.select(saved, "callbacks.probe.stream")
    window = OmegaConf.select(saved, "data.seq_len")
    if section is None or not isinstance(window, int):
        return None
    values = dict(OmegaConf.to_container(section, resolve=True))  # type: ignore[arg-type]
    values.pop("enabled", None)
    values.pop("every_n_probes", None)  # the training schedule, not a measurement setting
    cfg = StreamConfig.from_dict(values).resolve(window)
    ids = load_stream_ids(Path(run_dir))
    if cfg.stream_len is not None and len(ids) < cfg.stream_len:
        cfg = replace(cfg, stream_len=len(ids))  # a short validation split, as in training
    model, _ = load_checkpoint_model(ckpt.path)
    result = stream_nll(model, ids, cfg)
    return {c: v.double().cpu().numpy() for c, v in result.nll.items()}, result.cache_len


def streaming_report(
    run_dir: Path,
    out_dir: Path,
    step: int | None = None,
    table: str = "probes",
    x: str = "step",
    logx: bool = True,
    dpi: int = 90,
    per_token: bool = True,
) -> list[Path]:
    """The streaming evaluation's two figures from a run's table: perplexity against stream
    position at `step` (None: the last step with stream rows), and R_win / R_4 over training
    above Sink_1 and the first-token mass on the same x axis.

    The position figure puts every condition, the recompute oracle included, on the same
    query positions: with `per_token` and a checkpoint at `step`, it re-runs the run's
    streaming evaluation on that checkpoint for per-position NLL (`stream_nll_at_step`, a few
    seconds on a CPU); otherwise it draws the logged bucket rows, where a strided oracle is a
    labelled level rather than a line (`plots.stream_position_figure`)."""
    df = run_table(run_dir, table)
    stream = df[df["metric"].str.startswith("stream/nll/")]
    if not len(stream):
        raise ConfigError("table", f"no stream/* rows in the {table} table of {run_dir}")
    if step is None:
        step = int(stream["step"].max())
    elif step not in set(stream["step"].tolist()):
        have = sorted(set(stream["step"].tolist()))
        raise ConfigError("step", f"{step} has no stream rows; steps with them: {have}")
    name = Path(run_dir).name
    title = f"streaming perplexity, step {step} ({name})"
    per_position = stream_nll_at_step(run_dir, step) if per_token else None
    if per_position is not None:
        nll, cache_len = per_position
        figure = plots.stream_shared_position_figure(
            nll, cache_len, title=f"{title}, shared positions"
        )
    else:
        figure = plots.stream_position_figure(df, step=step, title=title)
    written = [plots.save_figure(figure, out_dir / f"stream_ppl_by_position_step{step}.png", dpi)]
    measured = set(df.loc[df["metric"].str.startswith("stream/ratio/"), "metric"])
    conds = [m.removeprefix("stream/ratio/") for m in sorted(measured)]
    ratios = [c for c in plots.STREAM_RATIOS if c in conds] or [
        c for c in conds if c.startswith(("window", "sinks4"))
    ]
    if ratios:
        need = plots.stream_need_figure(
            df, ratios=ratios, x=x, logx=logx, title=f"streaming need ({name})"
        )
        written.append(
            plots.save_figure(
                need,
                out_dir / "stream_need_vs_sink.png",
                dpi,
            )
        )
    return written


def sweep_runs(folders: Sequence[Path]) -> list[Path]:
    """Run folders from a mix of multirun folders and run folders (several seeds' sweeps)."""
    runs: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if is_run_dir(folder):
            runs.append(folder)
        else:
            jobs = job_dirs(folder) if folder.is_dir() else []
            if not jobs:
                raise ConfigError("sweep", f"{folder}: neither a run nor a multirun folder")
            runs.extend(jobs)
    return runs


def config_value(run_dir: Path, key: str) -> str:
    """`key` (dotted, e.g. model.pos) from the run's saved .hydra/config.yaml."""
    path = RunLayout(run_dir).hydra_config
    if not path.is_file():
        raise ConfigError("by", f"{run_dir} has no .hydra/config.yaml to group by")
    value = OmegaConf.select(
        OmegaConf.load(path), key, default="__missing__", throw_on_resolution_failure=False
    )
    if value == "__missing__":
        raise ConfigError("by", f"{key!r} is not a key of {path}")
    return str(value)


def sweep_curves(
    runs: Sequence[Path],
    by: str,
    metric: str,
    layer: int = -1,
    x: str = "step",
    table: str = "probes",
) -> pd.DataFrame:
    """One curve per run (group = its `by` value): columns group, run, x, value."""
    parts = []
    for run in runs:
        df = run_table(run, table)
        curve = plots.aggregate_curve(df, metric, layer, x)
        if not len(curve) and layer == -1:  # a per-layer metric has no model row: mean over layers
            rows = df[(df["metric"] == metric) & (df["head"] == -1) & (df["layer"] >= 0)]
            curve = rows.groupby(x, as_index=False)["value"].mean().sort_values(x)
        if not len(curve):
            raise ValueError(f"{run}: no rows for metric {metric!r} at layer {layer}")
        curve.insert(0, "run", str(run))
        curve.insert(0, "group", config_value(run, by))
        parts.append(curve)
    return pd.concat(parts, ignore_index=True)


def compare_sweep(
    folders: Sequence[Path],
    by: str,
    out_dir: Path,
    metrics: Sequence[str] = DEFAULT_METRICS,
    layer: int = -1,
    x: str = "step",
    logx: bool = True,
    table: str = "probes",
    dpi: int = 90,
) -> list[Path]:
    """A sweep figure per metric (`sweep_<by>_<metric>.png`) plus the curves as CSV."""
    runs = sweep_runs(folders)
    written = []
    for metric in metrics:
        curves = sweep_curves(runs, by, metric, layer, x, table)
        where = (
            "all layers" if layer == -1 else f"layer {layer}"
        )  # model row, or mean of layer rows
        fig = plots.sweep_figure(
            curves,
            metric,
            by,
            x=x,
            logx=logx,
            title=plots.metric_title(metric, f"{where}, by {by}"),
        )
        stem = f"sweep_{slug(by)}_{slug(metric)}"
        written.append(plots.save_figure(fig, out_dir / f"{stem}.png", dpi))
        curves.to_csv(out_dir / f"{stem}.csv", index=False)
    return written
