"""Run one study of the catalogue end to end (`make study-<name>`): set its earlier runs
aside, run its sweep, its post-step, then write its report sections.

    python -m sinklab.reports.run_study pos_sweep                   # what make study-pos_sweep runs
    python -m sinklab.reports.run_study attention_sweep --dry-run   # the commands, run nothing
    python -m sinklab.reports.run_study pos_sweep trainer.max_steps=10   # overrides for the sweep
    python -m sinklab.reports.run_study --list                      # every study

Everything it does is read from the study's declaration (`study_catalog.STUDIES`). A report
view's name runs the study that feeds it (`streaming_sweep` runs attention_sweep). Earlier
runs are moved aside (`outputs/studies/<folder>.<date>`), never mixed with new jobs.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from sinklab.errors import ConfigError
from sinklab.reports import study_catalog
from sinklab.reports.study_catalog import PostStep, Study


def set_aside(folder: Path, stamp: str) -> Path | None:
    """Move an earlier run's folder to `<folder>.<stamp>`; None when there is none."""
    if not folder.is_dir():
        return None
    moved = folder.with_name(f"{folder.name}.{stamp}")
    folder.rename(moved)
    return moved


def sweep_command(study: Study, studies_dir: Path, overrides: list[str]) -> list[str]:
    """The Hydra multirun of the study's experiment into `studies_dir/<name>/`."""
    return [
        sys.executable,
        "-m",
        "sinklab.train",
        "-m",
        f"experiment={study.experiment}",
        f"hydra.sweep.dir={studies_dir / study.name}",
        "logger=csv",
        *overrides,
    ]


def post_step_command(step: PostStep, job: str) -> list[str]:
    """sinklab-analyze for one job, run from inside the study folder."""
    return [sys.executable, "-m", "sinklab.analyze", *step.command(job)]


def sweep_jobs(study_dir: Path) -> list[str]:
    """The job folders of a finished sweep (`<number>` or `<number>_<overrides>`), in job
    order."""
    jobs = [p.name for p in study_dir.iterdir() if p.is_dir() and p.name[:1].isdigit()]
    return sorted(jobs, key=lambda name: (int(name.split("_", 1)[0]), name))


def run_post_step(step: PostStep, study_dir: Path) -> int:
    """The post-step over every job, `step.parallel` processes at a time with one thread each;
    every job runs even when one fails. Returns the first non-zero exit code, else 0."""
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def one(job: str) -> int:
        command = post_step_command(step, job)
        print(f"(cd {study_dir} && OMP_NUM_THREADS=1 {shlex.join(command)})", flush=True)
        return subprocess.run(command, cwd=study_dir, env=env, check=False).returncode

    with ThreadPoolExecutor(max_workers=step.parallel) as pool:
        codes = list(pool.map(one, sweep_jobs(study_dir)))
    return next((code for code in codes if code), 0)


def dry_run(study: Study, studies_dir: Path, docs: Path, overrides: list[str]) -> str:
    """What `run` would do, one line a step (the post-step with `<job>` for each job)."""
    lines = [
        f"mv {studies_dir / folder} {studies_dir / folder}.<date>  # if it exists"
        for folder in study.folders()
    ]
    lines.append(shlex.join(sweep_command(study, studies_dir, overrides)))
    if study.post_step is not None:
        step = study.post_step
        command = shlex.join(post_step_command(step, "<job>"))
        lines.append(
            f"# every job <job> of {studies_dir / study.name}, {step.parallel} at a time:\n"
            f"(cd {studies_dir / study.name} && OMP_NUM_THREADS=1 {command})"
        )
    sections = ", ".join(view.name for view in study.views)
    lines.append(
        f"# then the report sections {sections} of {docs / 'results.md'} from "
        f"{studies_dir / study.name} (sinklab.reports.studies.study_report)"
    )
    return "\n".join(lines)


def run(study: Study, studies_dir: Path, docs: Path, overrides: list[str]) -> int:
    """Set aside, sweep, post-step, report; stops at the first failing step with its code."""
    from sinklab.reports.studies import study_report

    stamp = time.strftime("%Y%m%d-%H%M%S")
    for folder in study.folders():
        moved = set_aside(studies_dir / folder, stamp)
        if moved is not None:
            print(f"earlier runs of {folder} moved to {moved}", flush=True)
    command = sweep_command(study, studies_dir, overrides)
    print(shlex.join(command), flush=True)
    code = subprocess.run(command, check=False).returncode
    if code:
        return code
    if study.post_step is not None:
        code = run_post_step(study.post_step, studies_dir / study.name)
        if code:
            print(f"error: {study.name}'s post-step failed (exit {code})", file=sys.stderr)
            return code
    try:
        print(study_report(studies_dir / study.name, docs))
    except (FileNotFoundError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def catalogue_text() -> str:
    """Every study: its name, whether `make reproduce` runs it, its report sections and what
    it asks."""
    lines = []
    for study in study_catalog.STUDIES.values():
        runs = "reproduce" if study.reproduce else "on demand"
        views = ", ".join(view.name for view in study.views if view.name != study.name)
        extra = f" (also writes {views})" if views else ""
        lines.append(f"{study.name:<24} {runs:<10} {study.summary}{extra}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "name", nargs="?", help="a study of sinklab.reports.study_catalog, or a view of one"
    )
    ap.add_argument("overrides", nargs="*", help="Hydra overrides for the sweep")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument("--studies-dir", type=Path, default=Path("outputs/studies"))
    ap.add_argument("--docs", type=Path, default=Path("docs"))
    ap.add_argument("--list", action="store_true", help="list the catalogue's studies")
    args = ap.parse_intermixed_args(argv)
    if args.list or args.name is None:
        print(catalogue_text())
        return 0 if args.list else 2
    try:
        study = study_catalog.study(args.name)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if study.name != args.name:
        print(f"{args.name} is a report section of {study.name}: running {study.name}", flush=True)
    if args.dry_run:
        print(dry_run(study, args.studies_dir, args.docs, args.overrides))
        return 0
    return run(study, args.studies_dir, args.docs, args.overrides)


if __name__ == "__main__":
    sys.exit(main())
