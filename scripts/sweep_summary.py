"""Write a sweep's summary table: one row per job, its overrides and headline figures.

    python scripts/sweep_summary.py outputs/multirun/<sweep>

Writes <sweep>/summary.csv (full precision) and <sweep>/summary.md (the table printed here),
the same files `sinklab-train -m` writes by itself when its jobs end. The overrides column
shows what sets each job apart; the overrides every job shares head the table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sinklab.reports.sweep_summary import write_sweep_summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("sweep", type=Path, help="a multirun folder (outputs/multirun/<date>-<name>)")
    args = ap.parse_args(argv)
    try:
        csv_path, md_path = write_sweep_summary(args.sweep)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(md_path.read_text())
    print(f"written: {md_path} and {csv_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
