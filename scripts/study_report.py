"""Regenerate a study's sections of docs/results.md from its sweep folder: the report views
that its declaration lists (`sinklab.reports.study_catalog`; attention_sweep writes three).

python scripts/study_report.py outputs/studies/pos_sweep --docs docs
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sinklab.reports.studies import study_report


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "study_dir", type=Path, help="a multirun folder, e.g. outputs/studies/pos_sweep"
    )
    parser.add_argument(
        "--docs", type=Path, default=Path("docs"), help="where results.md and figures/ live"
    )
    args = parser.parse_args()
    try:
        print(study_report(args.study_dir, args.docs))
    except (FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
