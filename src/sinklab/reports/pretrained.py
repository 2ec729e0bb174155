"""The pretrained-model report: measure an imported model (SmolLM2-135M by default, or Gemma 3
270M with `target="gemma3"`) on Gu et al.'s protocol, draw its figures and summarise Sink_1
and massive activations.

The numbers come from the same `measure_probe_set` call as every training run; only the
probe set differs (cut from a corpus with the model's own tokenizer).

The streaming table (`stream_markdown`) puts every perplexity and every ratio on one set of
query positions, t >= C where the oracle ran: its oracle runs at every position, in
interleaved resumable passes (`oracle_by_parts`), since on a CPU that costs C times the
cache conditions (SmolLM2 at C = 256 over 2,048 tokens: about 460k tokens of forwards).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sinklab.analysis import names
from sinklab.analysis.capture import eval_mode
from sinklab.analysis.records import read_rows
from sinklab.analysis.streaming import (
    StreamConfig,
    StreamNLL,
    parse_condition,
    recompute_nll,
    stream_nll,
)
from sinklab.errors import ConfigError, check
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


# -- streaming: every column on the same positions --------------------------------------------

ORACLE = "recompute"
DOC_BLOCK = "pretrained:{name}"


@dataclass(frozen=True)
class StreamTableRow:
    """One condition of the streaming table; every field rests on the same `positions`."""

    condition: str
    positions: int
    ppl: float
    ratio: float  # PPL(condition) / PPL(oracle) on those positions
    subset_positions: int
    subset_ratio: float  # the same ratio on the oracle's every-`subset_stride`-th positions


def shared_positions(result: StreamNLL) -> torch.Tensor:
    """Bool [T-1]: the query positions t >= C where every condition has an NLL. With the
    oracle at stride 1 these are all T - 1 - C positions; a strided oracle leaves only its
    own, and then every column (not just the ratios) is confined to them."""
    C = result.cache_len
    finite = torch.stack([nll.isfinite() for nll in result.nll.values()]).all(dim=0)
    return finite & (torch.arange(len(finite)) >= C)


def stride_subset(result: StreamNLL, stride: int) -> torch.Tensor:
    """Bool [T-1]: the positions t >= C an oracle of `stride` would run (t = C - 1 + k s),
    to show how far a strided oracle's ratios stray from the all-position ones."""
    t = torch.arange(result.stream_len - 1)
    return (t >= result.cache_len) & ((t - (result.cache_len - 1)) % stride == 0)


def _ppl_on(nll: torch.Tensor, mask: torch.Tensor) -> float:
    return math.exp(float(nll.double()[mask].mean()))


def stream_table(result: StreamNLL, subset_stride: int = 16) -> list[StreamTableRow]:
    """PPL and ratio to the oracle of every condition on one shared set of positions
    (`shared_positions`), beside the ratio on the every-`subset_stride`-th subset of them."""
    if ORACLE not in result.nll:
        raise ConfigError("stream.conditions", "the table needs the recompute oracle; add it")
    shared = shared_positions(result)
    subset = shared & stride_subset(result, subset_stride)
    oracle = result.nll[ORACLE]
    rows = []
    for name, nll in result.nll.items():
        rows.append(
            StreamTableRow(
                condition=name,
                positions=int(shared.sum()),
                ppl=_ppl_on(nll, shared),
                ratio=_ppl_on(nll, shared) / _ppl_on(oracle, shared),
                subset_positions=int(subset.sum()),
                subset_ratio=_ppl_on(nll, subset) / _ppl_on(oracle, subset),
            )
        )
    return rows


def condition_label(name: str, cache_len: int) -> str:
    """`sinks4_shift` -> "4 sinks + 252 recent, shift": the table's row titles."""
    cond = parse_condition(name)
    shift = ", shift" if cond.shift else ""
    if cond.kind == "dense":
        return "dense (no eviction)"
    if cond.kind == "recompute":
        return "sliding-window recompute (oracle)"
    if cond.n_sinks == 0:
        return f"window 0 + {cache_len}{shift}"
    plural = "sink" if cond.n_sinks == 1 else "sinks"
    return f"{cond.n_sinks} {plural} + {cache_len - cond.n_sinks} recent{shift}"


def stream_markdown(result: StreamNLL, subset_stride: int = 16) -> str:
    """The streaming table: one line saying which positions every column uses, then a row per
    condition (PPL and ratio on those positions; the strided-subset ratio for comparison)."""
    rows = stream_table(result, subset_stride)
    C, T = result.cache_len, result.stream_len
    n, k = rows[0].positions, rows[0].subset_positions
    first = int(shared_positions(result).nonzero()[0])
    lines = [
        f"All columns but the last use the same {n:,} query positions, t = {first:,} .. {T - 2:,} "
        f"(T = {T:,}, C = {C:,}); the last uses the {k:,} of them at every {subset_stride}th "
        "position from t = C - 1, where a strided oracle would run.",
        "",
        f"| condition (C = {C:,}) | PPL, those {n:,} positions | ratio to recompute | "
        f"ratio, every {subset_stride}th position |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {condition_label(r.condition, C)} | {r.ppl:.2f} | {r.ratio:.3f} | "
            f"{r.subset_ratio:.3f} |"
        )
    return "\n".join(lines)


def replace_block(text: str, name: str, body: str) -> str:
    """`text` with the lines between `<!-- pretrained:NAME -->` and `<!-- /pretrained:NAME -->`
    replaced by `body`; a missing marker is an error (the doc decides where the block goes)."""
    start, end = (
        f"<!-- {DOC_BLOCK.format(name=name)} -->",
        f"<!-- /{DOC_BLOCK.format(name=name)} -->",
    )
    if start not in text or end not in text or text.index(start) > text.index(end):
        raise ConfigError("doc", f"no {start} ... {end} block; add the two markers where it goes")
    head, rest = text.split(start, 1)
    return f"{head}{start}\n{body.strip()}\n{end}{rest.split(end, 1)[1]}"


def save_stream_nll(
    result: StreamNLL, path: Path, oracle_parts: tuple[int, list[int]] = (1, [0])
) -> None:
    """The per-position NLL of every condition (and T, C) as .npz: the table's inputs, so the
    doc block can be regenerated without measuring again. `oracle_parts` = (stride, offsets
    done) of an oracle run in parts (`oracle_by_parts`), so a stopped run can resume."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"nll/{k}": v.double().numpy() for k, v in result.nll.items()}
    stride, offsets = oracle_parts
    tmp = path.with_name(f".{path.stem}.tmp.npz")
    np.savez(
        tmp,
        stream_len=result.stream_len,
        cache_len=result.cache_len,
        oracle_stride=stride,
        oracle_offsets=np.array(offsets, dtype=np.int64),
        **arrays,
    )
    tmp.replace(path)


def load_stream_nll(path: Path) -> tuple[StreamNLL, tuple[int, list[int]]]:
    """The StreamNLL saved by `save_stream_nll` and its oracle's (stride, offsets done)."""
    with np.load(path) as data:
        nll = {
            k.removeprefix("nll/"): torch.from_numpy(data[k])
            for k in data.files
            if k.startswith("nll/")
        }
        parts = (int(data["oracle_stride"]), [int(o) for o in data["oracle_offsets"]])
        return StreamNLL(nll, {}, int(data["stream_len"]), int(data["cache_len"])), parts


def interleaved_offsets(stride: int) -> list[int]:
    """0 .. stride-1 in bit-reversed order (16: 0, 8, 4, 12, 2, ...): after any prefix of
    oracle passes at these offsets its positions are an evenly spread lattice (every 16th,
    then every 8th, ...), so a run stopped early still gives a representative subset."""
    check(stride >= 1 and stride & (stride - 1) == 0, "parts", f"{stride} is not a power of 2")
    bits = stride.bit_length() - 1
    return sorted(range(stride), key=lambda o: int(f"{o:0{bits}b}"[::-1] or "0", 2))


def oracle_by_parts(
    model: torch.nn.Module,
    ids: torch.Tensor,
    cfg: StreamConfig,
    stride: int,
    done: Callable[[torch.Tensor, list[int]], None] | None = None,
    resume: tuple[torch.Tensor, list[int]] | None = None,
) -> torch.Tensor:
    """The stride-1 recompute oracle [T-1] (float64), run as `stride` passes at
    `interleaved_offsets`; `done(oracle so far, offsets done)` is called after each pass (to
    save it); `resume` = (an oracle so far, its offsets done) skips those passes."""
    assert cfg.cache_len is not None
    oracle = torch.full((len(ids) - 1,), float("nan"), dtype=torch.float64)
    finished: list[int] = []
    if resume is not None:
        oracle, finished = resume[0].double().clone(), list(resume[1])
    with eval_mode(model):
        for offset in interleaved_offsets(stride):
            if offset in finished:
                continue
            part = recompute_nll(
                model, ids, cfg.cache_len, cfg.recompute_batch_size, stride, offset
            ).double()
            oracle = torch.where(part.isfinite(), part, oracle)
            finished.append(offset)
            if done is not None:
                done(oracle, finished)
    return oracle


def measure_stream(
    target: str,
    cfg: StreamConfig,
    corpus: str = "shakespeare",
    bos: str = "none",
    device: str = "cpu",
    save: Path | None = None,
    parts: int = 16,
) -> StreamNLL:
    """Per-position NLL of a pretrained model on the first T tokens of `corpus`, cut as
    `sinklab.analyze` cuts its stream (`build_stream`): the cache conditions of `cfg`
    (resolved), then the stride-1 oracle in `parts` interleaved passes, saved to `save` after
    each; an existing `save` of the same T and C resumes where it stopped."""
    from sinklab.reanalysis.corpus_probe import build_stream, corpus_documents, load_pretrained

    (pre,) = resolve(target)
    if isinstance(pre, HubTarget):
        pre, _ = hub_main(pre)
    if not isinstance(pre, PretrainedTarget):
        raise ConfigError("target", f"{target}: the streaming table is for pretrained models")
    assert cfg.stream_len is not None and cfg.cache_len is not None
    docs = corpus_documents(corpus)
    model, tokenizer = load_pretrained(pre.kind, pre.path)
    model = model.to(device)
    ids = build_stream(tokenizer, docs, cfg.stream_len, bos)
    resume = None
    if save is not None and save.exists():
        result, (stride, offsets) = load_stream_nll(save)
        same = (result.stream_len, result.cache_len, stride) == (
            cfg.stream_len,
            cfg.cache_len,
            parts,
        )
        if not same:
            raise ConfigError("stream", f"{save} holds another T, C or parts; move it away")
        resume = (result.nll[ORACLE], offsets)
    else:
        caches = tuple(c for c in cfg.conditions if c != ORACLE)
        result = stream_nll(model, ids, replace(cfg, conditions=caches))

    def done(oracle: torch.Tensor, offsets: list[int]) -> None:
        result.nll[ORACLE] = oracle
        if save is not None:
            save_stream_nll(result, save, (parts, offsets))

    result.nll[ORACLE] = oracle_by_parts(model, ids, cfg, parts, done, resume)
    return result
