"""`make bench` / `python scripts/bench.py`: every benchmark section, one table, one JSON.

Sections, in the order they run:
1. the matmul peak (again at the end; the best reading is the machine's peak);
2. the Bigram-Backcopy generator's speed on one core;
3. sinklab's Lightning path against the plain loop, interleaved a-b, b-a, ... per repeat;
4. one probe pass, the probes' projected share of a default run, reanalysis cost and memory;
5. MFU per position encoding and attention variant (the `tiny` model preset, plain loop);
6. which SDPA kernel each softmax variant runs (flash or not);
7. data at scale (issue 30; `--data-mb`): shard preparation, memory, loader and start.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from sinklab.bench import data_prep, report, sections
from sinklab.bench.peak import best_peak, matmul_peak
from sinklab.bench.sections import Options, log

# Counted options and their least accepted value: below it a section would have nothing to
# time or summarise (and reanalysis 0 skips it).
MINIMUMS = {
    "repeats": 1,
    "steps": 2,
    "warmup": 0,
    "threads": 1,
    "mfu_steps": 1,
    "reanalysis": 0,
    "probe_repeats": 1,
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run (< 1 min): 2 repeats, few steps, default variant only",
    )
    p.add_argument(
        "--repeats", type=int, help="interleaved repeats of sinklab vs plain (default 5; quick 2)"
    )
    p.add_argument(
        "--steps", type=int, help="optimizer steps per repeat and path (default 40; quick 8)"
    )
    p.add_argument(
        "--warmup", type=int, help="leading steps left out of every timing (default 5; quick 2)"
    )
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads for everything (default 1)"
    )
    p.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"]
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the model on both paths")
    p.add_argument(
        "--logger",
        default="wandb",
        choices=["wandb", "csv", "none"],
        help="the run's logger (default: wandb offline, the real default)",
    )
    p.add_argument(
        "--variants",
        default=None,
        choices=["all", "pos", "attention", "default"],
        help="MFU variants (default all; quick: default)",
    )
    p.add_argument(
        "--mfu-model",
        default="tiny",
        help="model preset (conf/model/<name>.yaml) for the MFU table",
    )
    p.add_argument(
        "--model",
        default=None,
        help="model preset for the sinklab-vs-plain recipe (e.g. gu60m on a GPU); default: the experiment's",
    )
    p.add_argument(
        "--mfu-steps", type=int, help="timed steps per MFU variant (default 12; quick 4)"
    )
    p.add_argument(
        "--reanalysis",
        type=int,
        help="checkpoints to reanalyse in a row, 0 to skip (default 16; quick 2)",
    )
    p.add_argument("--probe-repeats", type=int, help="timed probe passes (default 5; quick 2)")
    p.add_argument(
        "--out", type=Path, default=Path("outputs/bench"), help="where the table and JSON go"
    )
    p.add_argument("--keep-runs", action="store_true", help="keep the benchmark's run folders")
    p.add_argument(
        "--data-mb",
        default=None,
        help="corpus sizes (MB, comma-separated) of the data section; 0 skips it "
        "(default 100,1000; quick: 0)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Hydra override for the recipe (repeatable)",
    )
    return p


def to_options(a: argparse.Namespace) -> Options:
    """Fill in the defaults, which depend on `--quick`."""

    def pick(value: int | None, full: int, short: int) -> int:
        return value if value is not None else (short if a.quick else full)

    return Options(
        quick=a.quick,
        repeats=pick(a.repeats, 5, 2),
        steps=pick(a.steps, 40, 8),
        warmup=pick(a.warmup, 5, 2),
        threads=a.threads,
        device=a.device,
        compile=a.compile,
        logger=a.logger,
        variants=a.variants or ("default" if a.quick else "all"),
        mfu_model=a.mfu_model,
        model=a.model,
        mfu_steps=pick(a.mfu_steps, 12, 4),
        reanalysis=pick(a.reanalysis, 16, 2),
        probe_repeats=pick(a.probe_repeats, 5, 2),
        out=a.out,
        keep_runs=a.keep_runs,
        overrides=list(a.overrides),
    )


def option_errors(opts: Options) -> list[str]:
    """Why these options cannot run, one `--flag: reason` line each (empty when they can)."""
    errors = [
        f"--{name.replace('_', '-')}: must be >= {least}, got {getattr(opts, name)}"
        for name, least in MINIMUMS.items()
        if getattr(opts, name) < least
    ]
    if opts.steps - opts.warmup < 2:  # the Lightning side times the gaps between steps
        errors.append(
            f"--warmup: must leave two steps of --steps ({opts.steps}) to time, got {opts.warmup}"
        )
    return errors


def parse_args(argv: list[str] | None = None) -> Options:
    """Options from the command line; invalid values exit at once with `error: --flag: ...`."""
    parser = build_parser()
    opts = to_options(parser.parse_args(argv))
    errors = option_errors(opts)
    if errors:
        parser.error(errors[0])
    return opts


def data_sizes(argv: list[str] | None) -> list[float]:
    """The data section's corpus sizes in MB (empty: skip it)."""
    a = build_parser().parse_args(argv)
    raw = a.data_mb if a.data_mb is not None else ("0" if a.quick else "100,1000")
    sizes = [float(x) for x in raw.split(",") if float(x) > 0]
    return sorted(sizes)


def command_line(argv: list[str] | None) -> str:
    """The `make bench` call that reproduces this run."""
    args = sys.argv[1:] if argv is None else argv
    return "make bench" + (f' ARGS="{" ".join(args)}"' if args else "")


def measure(opts: Options, runs_dir: Path, rec: dict[str, Any]) -> None:
    """Run every section in order into `rec` (which holds the machine's description), reading
    the matmul peak before, between and after them."""
    dev = torch.device(opts.device)
    peaks = [matmul_peak(dev)]
    log(f"peak {peaks[0].wall / 1e9:.1f} GFLOP/s")
    recipe = sections.bench_recipe(opts, runs_dir)
    rec["recipe"] = report.describe_recipe(recipe, opts.logger, opts.compile)
    rec["generator"] = sections.generator_speed(recipe)
    paths, last_run = sections.compare_paths(recipe, opts, runs_dir)
    peaks.append(matmul_peak(dev))
    costs = sections.probe_costs(recipe, opts, paths, last_run)
    rec["mfu"] = sections.mfu_table(recipe, opts)
    peaks.append(matmul_peak(dev))
    peak = best_peak(peaks)
    for row in rec["mfu"]:
        sections.add_mfu(row, peak, row["flops_per_token"])
    rec["recipe_mfu"] = sections.recipe_mfu(recipe, paths, peak)
    rec["peak"], rec["peak_readings"] = peak, peaks
    rec["kernels"] = sections.kernel_table(recipe, opts)
    rec["encoder"] = sections.encoder_vs_decoder(recipe, opts)
    if dev.type == "cpu":
        rec["profile"] = sections.profile_section(recipe, opts)
    rec["machine"]["load_avg_end"] = os.getloadavg()
    rec["paths"], rec["costs"] = paths, costs


def main(argv: list[str] | None = None) -> dict[str, Any]:
    opts = parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    torch.set_num_threads(opts.threads)
    started = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    runs_dir = (opts.out / "runs" / stamp).resolve()
    rec: dict[str, Any] = {
        "machine": sections.machine_info(opts),
        "options": opts.to_record(),
        "command": command_line(argv),
    }
    measure(opts, runs_dir, rec)
    sizes = data_sizes(argv)
    if sizes:
        rec["data"] = data_prep.data_section(sizes, (opts.out / "scratch" / "data").resolve())
    rec["seconds"] = time.perf_counter() - started
    markdown = report.render(rec)
    if rec.get("data"):  # the data section renders itself (bench/data_prep.py)
        markdown += "\n\n" + "\n".join(data_prep.render(rec["data"]))
    md, js = report.write_outputs(opts.out, f"bench-{stamp}", markdown, rec)
    print(markdown)
    print(f"\n(wrote {md} and {js})")
    if not opts.keep_runs:
        shutil.rmtree(runs_dir, ignore_errors=True)
        shutil.rmtree(opts.out / "scratch", ignore_errors=True)
    return rec


if __name__ == "__main__":
    main()
