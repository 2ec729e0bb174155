"""Study reports: the final-step table and the emergence figures of one sweep, written into
the study's sections of docs/results.md (between markers, so the commentary around it stays).

What a study reports is declared once, in `study_catalog.py` (its report views); this module
renders any view from the runs of a sweep folder. `make study-<name>` runs the sweep and then
this, so every number in the report comes from runs that the make target reproduces.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from sinklab.analysis import names
from sinklab.reports import (
    evidence,
    frames_study,
    funnelling,
    plots,
    study_catalog,
    summary,
    verdicts,
)
from sinklab.reports.markdown import markdown_table
from sinklab.reports.study_catalog import Column, View
from sinklab.reports.verdicts import Evidence, JobStats
from sinklab.runs.layout import RunLayout, job_dirs

# The columns of every study's final-step table (a view adds its own after them).
FINAL_COLUMNS: tuple[Column, ...] = (
    ("Sink_1 %", names.SINK1, "model"),
    ("sink ratio %", names.SINK_RATIO, "model"),
    ("first-token mass", names.FIRST_TOKEN_MASS, "model"),
    ("max alpha_0", names.ALPHA0_MAX, "model"),
    ("top-1/median (max layer)", names.TOP1_OVER_MEDIAN, "max"),
    ("BOS value ratio (min layer)", names.VALUE_DRAIN, "min"),
    ("BOS resid ratio (last layer)", names.RESID_PEAK, "last"),
)
# Every study's figures, (metric, layer): "model" is the whole-model row, "last" the last
# layer's (residual metrics have no whole-model row).
FIGURE_METRICS: tuple[tuple[str, str], ...] = (
    (names.FIRST_TOKEN_MASS, "model"),
    (names.SINK1, "model"),
    (names.SINK_RATIO, "model"),
)


@dataclass
class Job:
    """A finished run of a sweep: its swept keys' values as its saved overrides give them
    (`keys`, the seed aside, in override order), its probe rows (plus analysis rows), and its
    final validation loss."""

    folder: Path
    keys: dict[str, str]
    rows: pd.DataFrame
    val_loss: float | None
    seed: str = ""

    @property
    def label(self) -> str:
        """`pos=alibi`: the setting as tables and legends show it (seeds of one setting share
        it, so tables and figures show their mean and spread)."""
        return setting_label(self.keys) or self.folder.name


def swept_keys(study_dir: Path) -> list[str]:
    """The keys the sweeper varied, from Hydra's multirun.yaml."""
    cfg = OmegaConf.load(study_dir / "multirun.yaml")
    params = OmegaConf.select(cfg, "hydra.sweeper.params") or {}
    return list(params.keys())


def job_setting(folder: Path, keys: Sequence[str]) -> dict[str, str]:
    """The job's values of the swept `keys` (the seed aside), read from its saved Hydra
    overrides: {"model.pos": "alibi"}. Values are kept whole (`[a,b]` stays one value)."""
    overrides = OmegaConf.load(RunLayout(folder).hydra_overrides)
    setting = {}
    for override in overrides:
        key, sep, value = str(override).lstrip("+~").partition("=")
        if sep and key in keys and key != "seed":
            setting[key] = value
    return setting


def job_seed(folder: Path) -> str:
    """The run's seed from its saved config: settings are compared seed by seed."""
    return str(OmegaConf.select(OmegaConf.load(RunLayout(folder).hydra_config), "seed"))


def setting_label(keys: dict[str, str]) -> str:
    """{"model.attention": "relu", "optim": "bb_sgd"} -> "attention=relu,optim=bb_sgd": the
    group prefix only makes legends longer."""
    return ",".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in keys.items())


def load_jobs(study_dir: Path, view: View | None = None) -> list[Job]:
    """The finished jobs of a study folder, with the analysis rows that the report `view`
    reads from sibling folders (default: the view named like the folder)."""
    view = view or study_catalog.view(study_dir.name)
    keys = swept_keys(study_dir)
    jobs = []
    for folder in job_dirs(study_dir):
        layout = RunLayout(folder)
        table, summary = layout.probes_table, layout.summary
        if not (table.exists() and summary.exists()):  # a job still running
            continue
        summary_data = json.loads(summary.read_text())
        if summary_data.get("status", "finished") != "finished":  # a job that stopped early
            continue
        val = summary_data.get("final_val_loss")
        rows = with_analysis_rows(pd.read_parquet(table), layout.reanalysis_table)
        for sibling in view.siblings:
            path = study_dir.parent / sibling.folder / folder.name / layout.reanalysis_table.name
            rows = with_analysis_rows(rows, path, sibling.prefix, sibling.renamed)
        jobs.append(Job(folder, job_setting(folder, keys), rows, val, job_seed(folder)))
    return jobs


def with_analysis_rows(
    rows: pd.DataFrame, analysis: Path, prefix: str = "", renamed: str = ""
) -> pd.DataFrame:
    """The probe rows plus the metrics that only sinklab-analyze measured on this run (a
    study's post-step, e.g. the prefixed sinks on the final checkpoints): rows of metrics the
    probe table does not have, so a re-measured metric is never counted twice. With
    `prefix`, only the analysis metrics under it, renamed to start with `renamed`."""
    if not analysis.exists():
        return rows
    extra = pd.read_parquet(analysis)
    if prefix:
        extra = extra[extra["metric"].str.startswith(prefix)].copy()
        extra["metric"] = renamed + extra["metric"].str.slice(len(prefix))
    extra = extra[~extra["metric"].isin(set(rows["metric"].unique()))]
    if not len(extra):
        return rows
    return pd.concat([rows, extra[rows.columns]], ignore_index=True)


def final_value(rows: pd.DataFrame, metric: str, how: str) -> float | None:
    """`metric` at the final probe: the model row ("model") or the max / min / first / last
    layer's;
    with "@start" appended (e.g. "last@start"), at the first probe instead, for a metric
    whose starting value is its reference (the residual peak starts at 1.5-1.7)."""
    how, _, when = how.partition("@")
    step = rows["step"].min() if when == "start" else rows["step"].max()
    last = rows[rows["step"] == step]
    part = last[(last["metric"] == metric) & (last["head"] == -1)]
    if how == "model":
        part = part[part["layer"] == -1]
        return float(part["value"].iloc[0]) if len(part) else None
    part = part[part["layer"] >= 0].sort_values("layer")
    if not len(part):
        return None
    values = part["value"]
    reduced = {
        "max": values.max(),
        "min": values.min(),
        "first": values.iloc[0],
        "last": values.iloc[-1],
    }
    return float(reduced[how])


def slot_columns(jobs: list[Job]) -> list[str]:
    """Extra-slot scores (sink token, kv bias, sink logit) that any job reports."""
    names = set()
    for job in jobs:
        names.update(m for m in job.rows["metric"].unique() if m.startswith("slot_sink_pct/"))
    return sorted(names)


def final_table(
    jobs: list[Job], extra: tuple[Column, ...] = (), columns: tuple[Column, ...] | None = None
) -> pd.DataFrame:
    """One row per setting: the mean over its seeds of FINAL_COLUMNS and `extra`, plus
    Sink_1 seed by seed. `columns` given: exactly those columns (a view's further table), no
    slots, loss or seeds."""
    records = []
    slots = slot_columns(jobs) if columns is None else []
    for label in dict.fromkeys(job.label for job in jobs):  # first-seen order
        group = [job for job in jobs if job.label == label]
        record: dict[str, object] = {"run": label}
        chosen = columns if columns is not None else FINAL_COLUMNS + extra
        for title, metric, how in chosen:
            record[title] = _mean([final_value(job.rows, metric, how) for job in group])
        if columns is not None:
            records.append(record)
            continue
        for slot in slots:
            record[f"{slot.split('/', 1)[1]} slot Sink %"] = _mean(
                [final_value(job.rows, slot, "model") for job in group]
            )
        record["val loss"] = _mean([job.val_loss for job in group])
        if len(group) > 1:
            per_seed = [final_value(job.rows, names.SINK1, "model") for job in group]
            record["Sink_1 by seed"] = " / ".join(
                "-" if v is None else f"{v:.3g}" for v in per_seed
            )
        records.append(record)
    table = pd.DataFrame.from_records(records)
    return table.dropna(axis=1, how="all")


def _mean(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def _ratio(job: Job, numerator: str, denominator: str) -> float | None:
    top, bottom = (
        final_value(job.rows, numerator, "model"),
        final_value(job.rows, denominator, "model"),
    )
    return None if top is None or not bottom else top / bottom


# Every per-run statistic a verdict, a control or a statistics table can name: one function each,
# so the tables, the verdicts and the summary read the same numbers.
STATISTICS: dict[str, Callable[[Job], float | None]] = {
    "ftm_auc": lambda job: evidence.first_token_mass_auc(job.rows),
    "sink_ratio_auc": lambda job: evidence.curve_auc(job.rows, names.SINK_RATIO),
    "sink_ratio_auc_supervised": lambda job: evidence.curve_auc(
        job.rows, names.from_query_start(names.SINK_RATIO)
    ),
    "ftm_auc_supervised": lambda job: evidence.curve_auc(
        job.rows, names.from_query_start(names.FIRST_TOKEN_MASS)
    ),
    "time_to_sink": lambda job: evidence.time_to_sink(job.rows)[0],
    "time_to_sink_M": lambda job: evidence.time_to_sink(job.rows)[0] / 1e6,
    "sink_reached": lambda job: float(evidence.time_to_sink(job.rows)[1]),
    "final_sink1": lambda job: final_value(job.rows, names.SINK1, "model"),
    "val_loss": lambda job: job.val_loss,
    "final_ftm": lambda job: final_value(job.rows, names.FIRST_TOKEN_MASS, "model"),
    "r_win": lambda job: final_value(job.rows, "stream/ratio/window_shift", "model"),
    "r_win_noshift": lambda job: final_value(job.rows, "stream/ratio/window", "model"),
    # PPL with a window of C recent tokens over PPL with BOS kept plus C - 1 recent (shifted
    # positions, every position t >= C): what evicting BOS costs, with no oracle in between.
    "bos_eviction_cost": lambda job: _ratio(
        job, "stream/ppl/window_shift", "stream/ppl/sinks1_shift"
    ),
    "max_act": lambda job: final_value(job.rows, "outliers/resid_post/max_abs", "model"),
    "w8a8_static": lambda job: final_value(
        job.rows, "quant/ppl_increase/per_tensor_static", "model"
    ),
    "w4a4_static": lambda job: final_value(
        job.rows, "quant_w4/ppl_increase/per_tensor_static", "model"
    ),
}
# The robust summaries every study shows, (title, statistic).
ROBUST: tuple[tuple[str, str], ...] = (
    ("time to sink, M tokens", "time_to_sink_M"),
    ("sink reached", "sink_reached"),
    ("first-token-mass AUC", "ftm_auc"),
    ("final Sink_1 %", "final_sink1"),
)


def needed_statistics(view: View) -> list[str]:
    """The statistics the view's tables, verdicts, controls and correlations read."""
    wanted = [key for _, key in ROBUST + view.statistics]
    for d in view.directions:
        wanted.append(d.statistic)
        if d.control is not None:
            wanted.append(d.control.statistic)
    for corr in view.correlations:
        wanted += [corr.x, corr.y]
    return list(dict.fromkeys(wanted))


def collect_evidence(jobs: list[Job], view: View, study: str) -> Evidence:
    """Every statistic the view needs, run by run: what its tables and verdicts are judged on."""

    def clean(value: float | None) -> float | None:
        return None if value is None or math.isnan(value) else float(value)

    keys = needed_statistics(view)
    return Evidence(
        view=view.name,
        study=study,
        steps=int(max(job.rows["step"].max() for job in jobs)),
        tokens=int(max(job.rows["tokens_seen"].max() for job in jobs)),
        jobs=[
            JobStats(job.label, job.seed, {key: clean(STATISTICS[key](job)) for key in keys})
            for job in jobs
        ],
    )


def robust_table(ev: Evidence, view: View) -> pd.DataFrame:
    """One row per setting: the robust summaries and the view's statistics, mean [95 % t
    interval] over seeds, and how many seeds reached a lasting sink."""
    return verdicts.statistics_table(ev, ROBUST + view.statistics)


def verdict_block(ev: Evidence, view: View) -> list[str]:
    """The verdict table with its rule and the number of comparisons, and the correlations."""
    lines = []
    judged = verdicts.judge(ev, view.directions)
    if judged:
        m = judged[0].comparisons
        lines += [
            f"Published directions ({m} tested comparison{'s' if m != 1 else ''} in this "
            "section, Holm-corrected together; difference: setting - baseline, mean [95 % t "
            "interval] over seeds, seed-paired when the runs share seeds; reproduced / "
            "contradicted: the Holm-adjusted p < 0.05 with the difference on the published / "
            "the other side; untestable here: see `src/sinklab/reports/directions.py`):",
            "",
            markdown_table(verdicts.verdict_table(judged)),
            "",
        ]
    for corr in view.correlations:
        lines += [verdicts.correlation_text(ev, corr) + ".", ""]
    return lines


def evidence_lines(ev: Evidence, view: View) -> list[str]:
    """The part of a section rendered from its evidence alone: the robust summaries, the
    verdicts and the correlations (tests/reports/test_generated_results.py re-renders it from
    the committed docs/evidence/<view>.json and finds it verbatim in docs/results.md)."""
    return [
        "Robust summaries (mean [95 % t interval] over seeds; time to sink: the first probe "
        f"from which Sink_1 > {evidence.SINK_THRESHOLD_PCT:g} % for {evidence.PERSIST_PROBES} "
        "probes, runs that never get there counted at their last probe; per-run values in "
        f"`docs/evidence/{view.name}.json`):",
        "",
        markdown_table(robust_table(ev, view)),
        "",
        *verdict_block(ev, view),
    ]


def evidence_path(docs: Path, view: str) -> Path:
    """Where a view's evidence is kept: docs/evidence/<view>.json, beside the report."""
    return docs / "evidence" / f"{view}.json"


def study_figures(jobs: list[Job], view: View, out_dir: Path) -> list[Path]:
    """The view's figures: a curve per setting of every FIGURE_METRICS and view metric, its
    stacked panels, and the funnelling figures of a frames view."""
    name = view.name
    written = []
    for metric, which in FIGURE_METRICS + view.figures:
        curves = _curves(jobs, metric, which)
        if curves.empty:
            continue
        where = "" if which == "model" else " (last layer)"
        fig = plots.sweep_figure(curves, metric, by="", logx=True, title=f"{name}: {metric}{where}")
        slug = re.sub(r"[^a-z0-9]+", "_", metric.lower()).strip("_")
        written.append(plots.save_figure(fig, out_dir / f"{name}_{slug}.png", dpi=80))
    if view.panels is not None:
        panels = view.panels
        drawn = [(label, _curves(jobs, metric, which)) for label, metric, which in panels.panels]
        fig = plots.sweep_panels_figure(drawn, logx=True, title=panels.title)
        written.append(plots.save_figure(fig, out_dir / f"{panels.stem}.png", dpi=80))
    if view.frames:
        written += _funnel_figures(jobs, name, out_dir)
    return written


def _funnel_figures(jobs: list[Job], name: str, out_dir: Path) -> list[Path]:
    """Funnelling: each setting's layers over training (seeds averaged), and every setting's
    final layer profile on one axis."""
    written = []
    labels = list(dict.fromkeys(job.label for job in jobs))
    settings = {label: [j.rows for j in jobs if j.label == label] for label in labels}
    fig = funnelling.funnel_over_training_figure(
        settings, title=f"{name}: funnelling over training (seeds averaged)"
    )
    written.append(plots.save_figure(fig, out_dir / f"{name}_funnel_training.png", dpi=70))
    profiles = {
        label: pd.concat([j.rows for j in jobs if j.label == label], ignore_index=True)
        for label in labels
    }
    fig = funnelling.funnel_by_layer_figure(profiles, title=f"{name}: final step, seeds averaged")
    written.append(plots.save_figure(fig, out_dir / f"{name}_funnel_by_layer.png", dpi=80))
    return written


def _curves(jobs: list[Job], metric: str, which: str) -> pd.DataFrame:
    """(group, run, step, value) of one metric for every job: the model row, the last
    layer's row (`which="last"`) or the mean over layers (`which="mean"`)."""
    parts = []
    for job in jobs:
        if which == "mean":  # layer rows averaged over layers, step by step
            part = job.rows[
                (job.rows["metric"] == metric) & (job.rows["head"] == -1) & (job.rows["layer"] >= 0)
            ]
            curve = part.groupby("step", as_index=False)["value"].mean().sort_values("step")
        else:
            layer = -1 if which == "model" else int(job.rows["layer"].max())
            curve = plots.aggregate_curve(job.rows, metric, layer=layer)
        curve.insert(0, "run", str(job.folder))
        curve.insert(0, "group", job.label)
        parts.append(curve)
    return pd.concat(parts, ignore_index=True)


def _seed_text(jobs: list[Job]) -> str:
    seeds = sorted({j.seed for j in jobs})
    return f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(seeds)}"


def update_section(document: Path, name: str, body: str) -> None:
    """Replace the text between `<!-- study:NAME -->` and `<!-- /study:NAME -->`, or append."""
    start, end = f"<!-- study:{name} -->", f"<!-- /study:{name} -->"
    text = document.read_text() if document.exists() else "# Results\n"
    block = f"{start}\n{body.strip()}\n{end}"
    if start in text and end in text:
        text = text[: text.index(start)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + f"\n\n## {name}\n\n{block}\n"
    tmp = document.with_name(f".{document.name}.tmp")
    tmp.write_text(text)
    tmp.replace(document)


def study_report(study_dir: Path, docs: Path) -> str:
    """Write the figures and generated section of every report view the study's runs feed
    (the catalogue's views of the study named like the folder; the view of that name for any
    other folder); return their markdown."""
    study_dir = Path(study_dir)
    declared = study_catalog.STUDIES.get(study_dir.name)
    views = declared.views if declared else (study_catalog.view(study_dir.name),)
    return "\n\n".join(section_report(study_dir, docs, view) for view in views)


def section_report(study_dir: Path, docs: Path, view: View) -> str:
    """Write one report section (`view`) and its figures from the runs in `study_dir`."""
    name = view.name
    jobs = load_jobs(study_dir, view)
    if not jobs:
        raise FileNotFoundError(f"{study_dir}: no finished jobs with metrics/probes.parquet")
    study = study_dir.name
    figures = study_figures(jobs, view, docs / "figures")
    steps = int(max(job.rows["step"].max() for job in jobs))
    tokens = int(max(job.rows["tokens_seen"].max() for job in jobs))
    lines = [
        f"Final step {steps} ({tokens / 1e6:.1f}M tokens), {len(jobs)} runs "
        f"({_seed_text(jobs)}; values are means over seeds); "
        f"generated by `make study-{study}` from `outputs/studies/{study}/`.",
        "",
        markdown_table(final_table(jobs, view.columns)),
        "",
    ]
    if view.frames:
        lines += [
            "Reference frames at the final step (class: the seeds' majority when two thirds "
            "agree; emerged: the first probe from which the model's class stays the same, "
            "mean [95 % CI] over the seeds with a frame; metrics: layer means):",
            "",
            markdown_table(frames_study.frames_table(jobs)),
            "",
            "Ruscio et al.'s claims (rules in `src/sinklab/reports/frames_study.py`):",
            "",
            markdown_table(frames_study.frames_claims(jobs)),
            "",
            "Where the references sit, per layer at the final step (layer maps over seeds and "
            "layers; a reference is a key with r > 0.1, 'both ends': one in the first and one in "
            "the last 10 % of the probe window, the anchors of a bidirectional frame):",
            "",
            markdown_table(frames_study.anchor_table(jobs)),
            "",
            "Pyramidal funnelling at the final step (rule in `src/sinklab/reports/funnelling.py`: "
            "the upper half of the layers has lower row entropy and higher top-column mass than "
            "the lower half):",
            "",
            markdown_table(frames_study.funnel_table(jobs)),
            "",
        ]
    for extra in view.tables:
        table = final_table(jobs, columns=extra.columns)
        if len(table.columns) > 1:
            lines += [f"{extra.title}:", "", markdown_table(table), ""]
    ev = collect_evidence(jobs, view, study)
    if view.frames:
        ev.claims = [
            {k: str(v) for k, v in claim.items()}
            for claim in frames_study.frames_claims(jobs).to_dict("records")
        ]
    ev.save(evidence_path(docs, name))
    lines += evidence_lines(ev, view)
    lines += [
        " ".join(f"![{p.stem}](figures/{p.name})" for p in figures),
    ]
    body = "\n".join(lines)
    update_section(docs / "results.md", name, body)
    summary.write_summaries(docs, docs.parent / "README.md")
    return body
