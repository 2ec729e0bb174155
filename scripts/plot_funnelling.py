"""Pyramidal funnelling (seed 001) of runs or pretrained models: the normalised row entropy
and the top-column mass by layer, the half-vs-half verdict of `sinklab.reports.funnelling`,
and, for a single training run, the same metrics over training.

    python scripts/plot_funnelling.py outputs/analysis/smollm2_frames/reanalysis.parquet \\
        outputs/runs/<run> --label SmolLM2-135M --label "default run" --out docs/figures

A target is a run folder (its metrics/probes.parquet) or a table (.parquet) written by
`sinklab-analyze`. Prints one markdown row per target and writes funnel_by_layer.png (all
targets on one relative-depth axis) and, per run folder, funnel_training_<label>.png, into
--out (default: the first target's figures/ folder, <run>/figures as the other plot scripts).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

from sinklab.analysis.records import read_rows
from sinklab.reports import funnelling, plots
from sinklab.runs.layout import RunLayout


def load(target: Path) -> pd.DataFrame:
    """The tidy rows of a run folder (probes table) or of one .parquet table."""
    path = target if target.suffix == ".parquet" else RunLayout(target).probes_table
    if not path.exists():
        raise FileNotFoundError(f"{path}: no metric table (train or sinklab-analyze first)")
    return read_rows(path)


def default_out(target: Path) -> Path:
    """<run>/figures for a run folder; beside the table (<its folder>/figures) for a .parquet."""
    return (target.parent if target.suffix == ".parquet" else target) / "figures"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("targets", type=Path, nargs="+", help="run folders or .parquet tables")
    ap.add_argument("--label", action="append", default=[], help="one per target, in order")
    ap.add_argument(
        "--out", type=Path, default=None, help="figure folder (default <first target>/figures)"
    )
    args = ap.parse_args(argv)
    out = args.out or default_out(args.targets[0])
    labels = args.label + [t.stem if t.suffix else t.name for t in args.targets[len(args.label) :]]
    try:
        tables = {label: load(t) for label, t in zip(labels, args.targets, strict=False)}
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print("| model | layers | entropy lower -> upper | top-column mass lower -> upper | verdict |")
    print("|---|---:|---|---|---|")
    for label, rows in tables.items():
        f = funnelling.funnel(rows)
        n_layers = len(funnelling.layer_values(rows, funnelling.ENTROPY))
        print(
            f"| {label} | {n_layers} | {f.entropy_lower:.3f} -> {f.entropy_upper:.3f} | "
            f"{f.mass_lower:.3f} -> {f.mass_upper:.3f} | {f.verdict} |"
        )
    written = [
        plots.save_figure(funnelling.funnel_by_layer_figure(tables), out / "funnel_by_layer.png")
    ]
    for (label, rows), target in zip(tables.items(), args.targets, strict=False):
        if target.is_dir() and rows["step"].nunique() > 1:
            slug = re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")
            fig = funnelling.funnel_over_training_figure({label: [rows]}, title=label)
            written.append(plots.save_figure(fig, out / f"funnel_training_{slug}.png"))
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
