"""Streaming-evaluation figures of a run, or of one checkpoint measured on the spot.

    python scripts/plot_streaming.py outputs/runs/<run>                  # rows logged in training
    python scripts/plot_streaming.py outputs/runs/<run> --step 600
    python scripts/plot_streaming.py outputs/runs/<run>/checkpoints/last.ckpt   # measure, then plot

A checkpoint is first re-measured by sinklab-analyze's own code (`sinklab.reanalysis`, the
probe callback's functions; already measured checkpoints are reused) into
<run>/metrics/reanalysis.parquet, then drawn from there. Writes, into <run>/figures/ (or --out):
stream_ppl_by_position_step<N>.png (perplexity against stream position, one line per
condition) and stream_need_vs_sink.png (R_win and R_4 over training above Sink_1 and the
first-token mass).

The position plot puts every condition, the recompute oracle included, on the same query
positions: with a checkpoint at that step it re-runs the run's streaming evaluation there
(seconds on a CPU). --bucket-rows draws the logged bucket means instead, where the strided
oracle is a labelled perplexity level.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from sinklab.errors import ConfigError
from sinklab.reports.figures import TABLES, streaming_report


def measure_checkpoint(ckpt: Path) -> tuple[Path, int]:
    """Re-measure one checkpoint (skipped if already in the table); its run folder and step."""
    from sinklab.reanalysis import analyze, from_mapping

    (report,) = analyze(from_mapping({"target": str(ckpt), "progress": False}))
    steps = report.measured + report.skipped
    if not steps:
        raise ConfigError("target", f"{ckpt} could not be measured: {report.failed}")
    return ckpt.resolve().parent.parent, steps[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("target", type=Path, help="a run folder, or a .ckpt inside one")
    ap.add_argument("--step", type=int, default=None, help="step of the position plot")
    ap.add_argument("--table", choices=list(TABLES), default=None, help="default: probes")
    ap.add_argument("--x", choices=["step", "tokens_seen"], default="step")
    ap.add_argument("--linear-x", action="store_true", help="linear x axis (default: symlog)")
    ap.add_argument("--out", type=Path, default=None, help="figure folder (default <run>/figures)")
    ap.add_argument("--dpi", type=int, default=90)
    ap.add_argument(
        "--bucket-rows", action="store_true", help="draw the logged buckets, no model re-run"
    )
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        run, step, table = args.target, args.step, args.table or "probes"
        if args.target.suffix == ".ckpt":
            run, measured = measure_checkpoint(args.target)
            step, table = step if step is not None else measured, args.table or "reanalysis"
        written = streaming_report(
            run,
            args.out or run / "figures",
            step,
            table,
            args.x,
            not args.linear_x,
            args.dpi,
            per_token=not args.bucket_rows,
        )
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
