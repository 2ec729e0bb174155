"""The pretrained-model report: measure an imported model (SmolLM2-135M by default, or Gemma 3
270M with `target="gemma3"`) on Gu et al.'s protocol, draw its figures and summarise Sink_1
and massive activations.

The numbers come from the same `measure_probe_set` call as every training run; only the
probe set differs (cut from a corpus with the model's own tokenizer).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from sinklab.analysis import names
from sinklab.analysis.records import read_rows
from sinklab.errors import ConfigError
from sinklab.reanalysis.config import AnalyzeConfig, from_mapping
from sinklab.reanalysis.runner import analyze_pretrained, hub_main, pretrained_plan
from sinklab.reanalysis.targets import HubTarget, PretrainedTarget, resolve
from sinklab.reports import plots

# The layers whose attention maps the report draws: spread over the depth; Gemma 3's include
# its three global (full-attention) layers, 5, 11 and 17, beside sliding ones.
MAP_LAYERS = {
    "smollm2": (0, 1, 2, 5, 10, 15, 20, 29),
    "gemma3": (0, 1, 2, 4, 5, 8, 11, 17),
}


@dataclass
class PretrainedSummary:
    """The headline numbers of one pretrained model (model rows and per-layer extremes)."""

    name: str
    n_windows: int
    seq_len: int
    bos: str
    sink1_pct: float
    sink_ratio_pct: float
    first_token_mass: float
    layers: pd.DataFrame  # layer, sink1_pct, top1, top2, top3, median, top1_over_median, top1_position, top1_channel, sun_count


def _value(df: pd.DataFrame, metric: str, layer: int = -1) -> float:
    part = df[(df["metric"] == metric) & (df["head"] == -1) & (df["layer"] == layer)]
    return float(part["value"].iloc[0]) if len(part) else math.nan


def summarise(df: pd.DataFrame, cfg: AnalyzeConfig, name: str) -> PretrainedSummary:
    """Pick the report's numbers out of the tidy rows."""
    wanted = {
        names.SINK1: "sink1_pct",
        names.TOP1: "top1",
        names.TOP2: "top2",
        names.TOP3: "top3",
        names.MEDIAN: "median",
        names.TOP1_OVER_MEDIAN: "top1_over_median",
        names.TOP1_POSITION: "top1_position",
        names.TOP1_CHANNEL: "top1_channel",
        names.SUN_COUNT: "sun_count",
    }
    part = df[(df["head"] == -1) & (df["layer"] >= 0) & df["metric"].isin(list(wanted))]
    layers = (
        part.pivot_table(index="layer", columns="metric", values="value")
        .rename(columns=wanted)
        .reset_index()
    )
    return PretrainedSummary(
        name=name,
        n_windows=cfg.n_windows,
        seq_len=cfg.seq_len,
        bos=cfg.bos,
        sink1_pct=_value(df, names.SINK1),
        sink_ratio_pct=_value(df, names.SINK_RATIO),
        first_token_mass=_value(df, names.FIRST_TOKEN_MASS),
        layers=layers,
    )


def run_report(
    target: str = "smollm2",
    out_dir: Path | None = None,
    fig_dir: Path | None = None,
    device: str = "cpu",
    corpus: str = "shakespeare",
    n_windows: int = 100,
    seq_len: int = 64,
    bos: str = "none",
    map_layers: tuple[int, ...] | None = None,
    dpi: int = 90,
    fig_prefix: str = "",
    batch_size: int | None = None,
) -> tuple[PretrainedSummary, list[Path]]:
    """Measure (always afresh), write the table and figures, return the summary.

    `map_layers` None: the target's entry of MAP_LAYERS (SmolLM2's for any other target);
    figures are named `<fig_prefix><model name>_<figure>.png`. `batch_size` None: the
    analysis default (25 windows a forward); a large vocabulary wants all windows in one
    forward, since the capture keeps every window's logits and joins the chunks (a copy).
    """
    if map_layers is None:
        map_layers = MAP_LAYERS.get(target, MAP_LAYERS["smollm2"])
    cfg = from_mapping(
        {
            "target": target,
            "device": device,
            "out_dir": str(out_dir) if out_dir else None,
            "force": True,
            "corpus": corpus,
            "n_windows": n_windows,
            "seq_len": seq_len,
            "bos": bos,
            "batch_size": batch_size,
        }
    )
    (pre,) = resolve(cfg.target)
    source = None
    if isinstance(pre, HubTarget):  # a hub model: its main revision, pinned to its commit
        pre, source = hub_main(pre)
    if not isinstance(pre, PretrainedTarget):
        raise ConfigError("target", f"{cfg.target}: the report is for pretrained models")
    report = analyze_pretrained(pre, cfg, map_layers, source=source)
    df = read_rows(report.table)
    # only this probe set's rows: the table may also hold other settings' (interventions, ...)
    source = source or (pre.kind if pre.path is None else f"{pre.kind}:{pre.path}")
    probe_tag = pretrained_plan(source, cfg).probe_tag
    df = df[(df["run_id"] == pre.name) & (df["checkpoint"] == probe_tag)]
    summary = summarise(df, cfg, pre.name)
    fig_dir = Path(fig_dir) if fig_dir else report.table.parent / "figures"
    written = [
        plots.save_figure(
            plots.activation_profile_figure(df, title=f"{pre.name}: residual |h| per layer"),
            fig_dir / f"{fig_prefix}{pre.name}_massive_profile.png",
            dpi,
        ),
        plots.save_figure(
            plots.layer_profile_figure(
                df, names.SINK1, title=f"{pre.name}: Sink_1 (eps 0.3) per layer"
            ),
            fig_dir / f"{fig_prefix}{pre.name}_sink1_by_layer.png",
            dpi,
        ),
    ]
    layers, maps = tuple(report.attention_maps), list(report.attention_maps.values())
    if maps:
        written.append(
            plots.save_figure(
                plots.attention_maps_figure(
                    maps, title=f"{pre.name}: head-averaged attention", layer_labels=layers
                ),
                fig_dir / f"{fig_prefix}{pre.name}_attention_maps.png",
                dpi,
            )
        )
    return summary, written


def markdown(summary: PretrainedSummary) -> str:
    """The per-layer table of the report, as markdown."""
    lines = [
        "| layer | Sink_1 % | top-1 \\|h\\| | top-2 | top-3 | median \\|h\\| | top-1 / median | top-1 at (position, channel) | Sun count |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |",
    ]
    for r in summary.layers.itertuples(index=False):
        lines.append(
            f"| {int(r.layer)} | {r.sink1_pct:.1f} | {r.top1:.1f} | {r.top2:.1f} | {r.top3:.1f} | {r.median:.3f} | "
            f"{r.top1_over_median:.0f} | ({int(r.top1_position)}, {int(r.top1_channel)}) | {r.sun_count:.2f} |"
        )
    return "\n".join(lines)
