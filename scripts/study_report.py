"""Regenerate a study's sections of docs/results.md from its sweep folder: the report views
that its declaration lists (`sinklab.reports.study_catalog`; attention_sweep writes three),
their evidence (docs/evidence/<view>.json), and then the questions table of docs/results.md
and the README's results paragraph, which are rendered from every view's evidence.

python scripts/study_report.py outputs/studies/pos_sweep --docs docs
python scripts/study_report.py --summary          # only the questions table and the README paragraph
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sinklab.reports.studies import study_report
from sinklab.reports.summary import write_summaries


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "study_dir", type=Path, nargs="?", help="a multirun folder, e.g. outputs/studies/pos_sweep"
    )
    parser.add_argument(
        "--docs", type=Path, default=Path("docs"), help="where results.md and figures/ live"
    )
    parser.add_argument(
        "--summary",
        action="store_true",
        help="re-render the questions table and the README paragraph from docs/evidence/ only",
    )
    args = parser.parse_args()
    if args.summary:
        for path in write_summaries(args.docs, args.docs.parent / "README.md"):
            print(f"wrote {path}")
        return 0
    if args.study_dir is None:
        parser.print_usage(sys.stderr)
        print("error: give a study folder, or --summary", file=sys.stderr)
        return 2
    try:
        print(study_report(args.study_dir, args.docs))
    except (FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
