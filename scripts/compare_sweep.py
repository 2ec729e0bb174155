"""Compare the runs of a sweep, grouped by any config key, with the spread over seeds.

    python scripts/compare_sweep.py outputs/multirun/<pos_sweep> --by model.pos
    python scripts/compare_sweep.py outputs/multirun/<seed0> outputs/multirun/<seed1> \\
        --by model.pos --metrics sink/sink1_pct --layer 1 --out docs/figures

Each run is grouped by the value of --by in its .hydra/config.yaml; a group's line is the
mean over its runs (e.g. seeds), the band their min-max. Writes sweep_<by>_<metric>.png and
the plotted curves as .csv beside it (default folder: <first multirun>/figures).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sinklab.errors import ConfigError
from sinklab.reports.figures import DEFAULT_METRICS, TABLES, compare_sweep


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("folders", type=Path, nargs="+", help="multirun folders and/or run folders")
    ap.add_argument("--by", required=True, help="dotted config key, e.g. model.pos")
    ap.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS))
    ap.add_argument("--layer", type=int, default=-1, help="-1: the all-layer aggregate")
    ap.add_argument("--x", choices=["step", "tokens_seen"], default="step")
    ap.add_argument("--linear-x", action="store_true", help="linear x axis (default: symlog)")
    ap.add_argument("--table", choices=list(TABLES), default="probes")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--dpi", type=int, default=90)
    args = ap.parse_args(argv)
    try:
        written = compare_sweep(
            args.folders,
            args.by,
            args.out or args.folders[0] / "figures",
            args.metrics,
            args.layer,
            args.x,
            not args.linear_x,
            args.table,
            args.dpi,
        )
    except (ConfigError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
