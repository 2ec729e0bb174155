"""One table for a whole sweep: every job's overrides and headline figures side by side.

A multirun folder holds one run folder per job; reading each job's summary.json and probe
table by hand is what a sweep's user should not have to do. `sweep_table` reads them all;
`write_sweep_summary` writes `<sweep>/summary.csv` and `<sweep>/summary.md`. It runs by
itself at the end of every `sinklab-train -m` (the Hydra callback below, named in
conf/train.yaml) and on demand: `python scripts/sweep_summary.py <sweep>`.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback

from sinklab.runs.layout import RunLayout, job_dirs, saved_overrides

if TYPE_CHECKING:
    import pandas as pd
    from omegaconf import DictConfig

SUMMARY_CSV = "summary.csv"
SUMMARY_MD = "summary.md"

# (column, summary.json key): the run's own figures.
RUN_FIGURES = (
    ("final train loss", "final_train_loss"),
    ("final val loss", "final_val_loss"),
    ("tokens", "tokens_seen"),
    ("fit s", "fit_seconds"),
)


def probe_figures() -> tuple[tuple[str, str, str], ...]:
    """(column, metric, how): the probe figures at the metric's last step; "model" is the
    model row, "max" the largest layer row (massive activations are per layer). A function so
    that Hydra loading this module's callback for every run does not import torch."""
    from sinklab.analysis import names

    return (
        ("Sink_1 %", names.SINK1, "model"),
        ("first-token mass", names.FIRST_TOKEN_MASS, "model"),
        ("top-1/median (max layer)", names.TOP1_OVER_MEDIAN, "max"),
        ("R_win shift", "stream/ratio/window_shift", "model"),
        ("R_4 shift", "stream/ratio/sinks4_shift", "model"),
        ("W8A8 static PPL +", "quant/ppl_increase/per_tensor_static", "model"),
    )


SLOT_MASS_PREFIX = "slot_mass/"


def last_value(rows: pd.DataFrame, metric: str, how: str) -> float | None:
    """`metric` at the last step that measured it (W8A8 and streaming run on sparser schedules
    than the probes): the model row, or the largest layer row."""
    part = rows[(rows["metric"] == metric) & (rows["head"] == -1)]
    if not len(part):
        return None
    part = part[part["step"] == part["step"].max()]
    part = part[part["layer"] == -1] if how == "model" else part[part["layer"] >= 0]
    if not len(part):
        return None
    return float(part["value"].max() if how == "max" else part["value"].iloc[0])


def _status(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "no summary (running or failed)"
    return str(summary.get("status") or summary.get("reason") or "finished")


def shared_overrides(jobs: list[Path]) -> list[str]:
    """The overrides every job of the sweep has: the sweep's fixed settings (none for one job,
    whose overrides are all it is)."""
    lists = [saved_overrides(job) or [] for job in jobs]
    if len(lists) < 2:
        return []
    common = set(lists[0]).intersection(*lists[1:])
    return [o for o in lists[0] if o in common]


def sweep_table(sweep: Path) -> pd.DataFrame:
    """One row per job, in job order: its folder, the overrides that set it apart from the
    other jobs, its status, and its headline figures (NaN where the job has none)."""
    import pandas as pd

    from sinklab.analysis.records import read_rows

    jobs = job_dirs(Path(sweep))
    shared = set(shared_overrides(jobs))
    records = []
    for job in jobs:
        layout = RunLayout(job)
        own = [o for o in saved_overrides(job) or [] if o not in shared]
        summary = json.loads(layout.summary.read_text()) if layout.summary.is_file() else None
        record: dict[str, Any] = {
            "job": job.name,
            "overrides": " ".join(own),
            "status": _status(summary),
        }
        for column, key in RUN_FIGURES:
            record[column] = (summary or {}).get(key)
        if summary is not None and "skipped_batches" in summary:
            record["skipped batches"] = summary["skipped_batches"]
        rows = read_rows(layout.probes_table)
        for column, metric, how in probe_figures():
            record[column] = last_value(rows, metric, how)
        for slot in sorted(m for m in set(rows["metric"]) if m.startswith(SLOT_MASS_PREFIX)):
            record[slot.replace("/", " ")] = last_value(rows, slot, "model")
        records.append(record)
    table = pd.DataFrame.from_records(records)
    # A figure no job has (no streaming evaluation in this sweep) is only noise.
    figures = [c for c in table.columns if c not in ("job", "overrides", "status")]
    return table.drop(columns=[c for c in figures if table[c].isna().all()])


def write_sweep_summary(sweep: Path) -> tuple[Path, Path]:
    """`<sweep>/summary.csv` (every figure, full precision) and `<sweep>/summary.md` (3
    significant figures, the shared overrides above the table)."""
    from sinklab.atomic import atomic_write
    from sinklab.reports.markdown import markdown_table

    sweep = Path(sweep)
    jobs = job_dirs(sweep) if sweep.is_dir() else []
    if not jobs:
        raise FileNotFoundError(f"{sweep}: no job folders with a probe set (not a sweep?)")
    table = sweep_table(sweep)
    shared = shared_overrides(jobs)
    csv_path, md_path = sweep / SUMMARY_CSV, sweep / SUMMARY_MD
    atomic_write(csv_path, lambda f: f.write(table.to_csv(index=False).encode()))
    lines = [
        f"# Sweep {sweep.name}: {len(jobs)} jobs",
        "",
        f"Every job: {' '.join(shared) if shared else '(no shared overrides)'}",
        "",
        markdown_table(table),
        "",
    ]
    atomic_write(md_path, lambda f: f.write("\n".join(lines).encode()))
    return csv_path, md_path


class SweepSummaryCallback(Callback):
    """Hydra callback: after a multirun, the sweep's summary table. A failure here is one
    warning line: the jobs' own results are already on disk."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep = Path(config.hydra.sweep.dir)
        try:
            csv_path, md_path = write_sweep_summary(sweep)
        except Exception as err:  # noqa: BLE001 - the sweep itself succeeded or failed already
            logging.getLogger(__name__).warning("no sweep summary for %s: %s", sweep, err)
            return
        print(f"sweep summary: {md_path} (+ {csv_path.name})", flush=True)
