"""Run every study of docs/results.md (`make reproduce`), after printing the plan and an
estimated time from this machine's earlier runs (`sinklab.reports.reproduce`).

    python scripts/reproduce.py --dry-run              # the plan and the estimate only
    python scripts/reproduce.py                        # plan, then every study in turn
    python scripts/reproduce.py --only pos_sweep,mlp_sweep

The studies and their order come from the catalogue (`sinklab.reports.study_catalog`). Each
runs as `make study-<name>` (its sweep into outputs/studies/<name>/, its post-step, then its
report sections); a line per study says when it started, what it was estimated at, and what it
took. A failing study stops the run with its exit code.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from sinklab.reports.reproduce import STUDIES, fallback_rate, plan_study, render_plan


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    ap.add_argument("--only", default="", help="comma-separated studies (default: all)")
    ap.add_argument("--studies-dir", type=Path, default=Path("outputs/studies"))
    args = ap.parse_args(argv)
    chosen = [s for s in args.only.split(",") if s] or list(STUDIES)
    unknown = [s for s in chosen if s not in STUDIES]
    if unknown:
        print(
            f"error: --only: unknown study {unknown[0]!r}; known: {', '.join(STUDIES)}",
            file=sys.stderr,
        )
        return 2
    plans = [plan_study(name, args.studies_dir) for name in chosen]
    print(render_plan(plans), flush=True)
    if args.dry_run:
        return 0
    fallback = fallback_rate(plans)
    started = time.monotonic()
    for i, plan in enumerate(plans, 1):
        est = plan.estimate_s(fallback)
        print(
            f"[{i}/{len(plans)}] {plan.name}: {plan.jobs} jobs, est. {est / 60:.0f} min", flush=True
        )
        t0 = time.monotonic()
        done = subprocess.run(["make", f"study-{plan.name}"], check=False)
        took = time.monotonic() - t0
        print(
            f"[{i}/{len(plans)}] {plan.name}: took {took / 60:.1f} min (estimated {est / 60:.0f})",
            flush=True,
        )
        if done.returncode != 0:
            print(f"error: make study-{plan.name} failed (exit {done.returncode})", file=sys.stderr)
            return done.returncode
    print(f"all {len(plans)} studies in {(time.monotonic() - started) / 3600:.2f} h")
    return 0


if __name__ == "__main__":
    sys.exit(main())
