"""Emergence figures of one run from its metric table (no model needed, except for maps).

    python scripts/plot_emergence.py outputs/runs/<run>                     # -> <run>/figures/
    python scripts/plot_emergence.py outputs/runs/<run> --metrics sink/sink1_pct \\
        --x tokens_seen --linear-x
    python scripts/plot_emergence.py outputs/runs/<run> --maps 0 64 512 --table reanalysis \\
        --out docs/figures

Writes emergence_<metric>.png (one line per layer), heatmap_<metric>.png (layer x step),
massive_profile.png (top-1/2/3 and median |h| per layer at the last step) and, with
--maps, attention_maps.png (head-averaged maps at the checkpoints nearest those steps).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from sinklab.errors import ConfigError
from sinklab.reports.figures import DEFAULT_METRICS, TABLES, emergence_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("run", type=Path, help="a run folder")
    ap.add_argument("--metrics", nargs="+", default=list(DEFAULT_METRICS))
    ap.add_argument("--x", choices=["step", "tokens_seen"], default="step")
    ap.add_argument("--linear-x", action="store_true", help="linear x axis (default: symlog)")
    ap.add_argument("--maps", nargs="*", type=int, default=[], help="steps for attention maps")
    ap.add_argument("--table", choices=list(TABLES), default="probes")
    ap.add_argument("--out", type=Path, default=None, help="figure folder (default <run>/figures)")
    ap.add_argument("--dpi", type=int, default=90)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        written = emergence_report(
            args.run,
            args.out or args.run / "figures",
            args.metrics,
            args.x,
            not args.linear_x,
            args.maps,
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
