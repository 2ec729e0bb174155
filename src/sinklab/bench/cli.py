"""`make bench` / `python scripts/bench.py`: every benchmark section, one table, one JSON.

Sections, in the order they run:
1. the matmul peak (again at the end; the best reading is the machine's peak);
2. the Bigram-Backcopy generator's speed on one core;
3. sinklab's Lightning path against the plain loop, interleaved a-b, b-a, ... per repeat;
4. one probe pass, the probes' projected share of a default run, reanalysis cost and memory;
5. MFU per position encoding and attention variant (the `tiny` model preset, plain loop);
6. which SDPA kernel each softmax variant runs (flash or not).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from sinklab.bench import report
from sinklab.bench.costs import probe_pass_seconds, project_default_run, reanalysis_cost
from sinklab.bench.kernels import attention_kernel_report
from sinklab.bench.lightning_path import run_lightning
from sinklab.bench.peak import Peak, best_peak, matmul_peak, mfu
from sinklab.bench.plain import plain_step_seconds
from sinklab.bench.profile import step_profile
from sinklab.bench.recipe import Recipe, bench_overrides, build_recipe, compose_run
from sinklab.bench.timing import Stamp, abba_order, rates, summarize
from sinklab.configs import CONF_DIR
from sinklab.data import tokens_per_second
from sinklab.model import ModelConfig, Transformer, flops_per_token
from sinklab.model.config import ATTENTIONS, POSITIONS

KERNEL_VARIANTS = {  # name: model overrides; the first three must reach the flash kernel
    "rope softmax": {"pos": "rope"},
    "learned softmax": {"pos": "learned"},
    "none softmax": {"pos": "none"},
    "alibi softmax": {"pos": "alibi"},
    "rope sink_logit": {"pos": "rope", "attention": "sink_logit"},
}


@dataclass
class Options:
    quick: bool
    repeats: int
    steps: int
    warmup: int
    threads: int
    device: str
    compile: bool
    logger: str
    variants: str
    mfu_model: str
    model: str | None
    mfu_steps: int
    reanalysis: int
    probe_repeats: int
    out: Path
    keep_runs: bool
    overrides: list[str]


def parse_args(argv: list[str] | None = None) -> Options:
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
        "--reanalysis", type=int, help="checkpoints to reanalyse in a row (default 16; quick 2)"
    )
    p.add_argument("--probe-repeats", type=int, help="timed probe passes (default 5; quick 2)")
    p.add_argument(
        "--out", type=Path, default=Path("outputs/bench"), help="where the table and JSON go"
    )
    p.add_argument("--keep-runs", action="store_true", help="keep the benchmark's run folders")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra Hydra override for the recipe (repeatable)",
    )
    a = p.parse_args(argv)
    quick = a.quick

    def pick(value: int | None, full: int, short: int) -> int:
        return value if value is not None else (short if quick else full)

    return Options(
        quick=quick,
        repeats=pick(a.repeats, 5, 2),
        steps=pick(a.steps, 40, 8),
        warmup=pick(a.warmup, 5, 2),
        threads=a.threads,
        device=a.device,
        compile=a.compile,
        logger=a.logger,
        variants=a.variants or ("default" if quick else "all"),
        mfu_model=a.mfu_model,
        model=a.model,
        mfu_steps=pick(a.mfu_steps, 12, 4),
        reanalysis=pick(a.reanalysis, 16, 2),
        probe_repeats=pick(a.probe_repeats, 5, 2),
        out=a.out,
        keep_runs=a.keep_runs,
        overrides=list(a.overrides),
    )


def preset(name: str) -> dict[str, Any]:
    """The non-null keys of conf/model/<name>.yaml (null sizes stay derived)."""
    values = OmegaConf.to_container(OmegaConf.load(Path(CONF_DIR) / "model" / f"{name}.yaml"))
    assert isinstance(values, dict)
    return {k: v for k, v in values.items() if v is not None and k != "vocab_size"}


def machine(opts: Options) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(
                (ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu
            )
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": opts.threads,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": opts.device,
        "load_avg_start": os.getloadavg(),
    }
    if opts.device == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
    return info


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- sections --------------------------------------------------------------------------------


def compare_paths(recipe: Recipe, opts: Options, runs_dir: Path) -> dict[str, Any]:
    """Requirement 1: sinklab (a) and the plain loop (b), interleaved, same config and data."""
    tokens = recipe.tokens_per_step
    rows: list[dict[str, Any]] = []
    last_run = None
    lightning_steps: list[Stamp] = []
    plain_steps: list[Stamp] = []
    probe_each, ckpt_each, val_each = [], [], []
    for r, order in enumerate(abba_order(opts.repeats, "sinklab", "plain")):
        got: dict[str, Stamp] = {}
        for who in order:
            if who == "sinklab":
                timing = run_lightning(recipe.run, runs_dir / f"sinklab-{r}", skip=opts.warmup)
                got[who] = rates(tokens, timing.step_seconds)
                lightning_steps += timing.step_seconds
                res = timing.result
                if timing.n_probes:
                    probe_each.append(res.probe_seconds / timing.n_probes)
                if res.checkpoints:
                    ckpt_each.append(res.checkpoint_seconds / len(res.checkpoints))
                if timing.validation_runs:
                    val_each.append(timing.validation_seconds / timing.validation_runs)
                last_run = timing
            else:
                steady = plain_step_seconds(recipe, opts.steps + 1, compile=opts.compile)[
                    opts.warmup + 1 :
                ]
                got[who] = rates(tokens, steady)
                plain_steps += steady
        row = {
            "repeat": r,
            "order": "-".join(order),
            "sinklab": got["sinklab"].wall,
            "plain": got["plain"].wall,
            "ratio": got["sinklab"].wall / got["plain"].wall,
            "sinklab_cpu": got["sinklab"].cpu,
            "plain_cpu": got["plain"].cpu,
            "ratio_cpu": got["sinklab"].cpu / got["plain"].cpu,
        }
        rows.append(row)
        log(
            f"repeat {r}: sinklab {row['sinklab']:.0f} tok/s, plain {row['plain']:.0f} tok/s, ratio {row['ratio']:.3f} "
            f"(per CPU-second {row['ratio_cpu']:.3f})"
        )
    return {
        "repeats": rows,
        "ratio": summarize([row["ratio"] for row in rows]),
        "ratio_cpu": summarize([row["ratio_cpu"] for row in rows]),
        "sinklab_tokens_per_s": summarize([row["sinklab"] for row in rows]),
        "plain_tokens_per_s": summarize([row["plain"] for row in rows]),
        "sinklab_tokens_per_cpu_s": summarize([row["sinklab_cpu"] for row in rows]),
        "plain_tokens_per_cpu_s": summarize([row["plain_cpu"] for row in rows]),
        "sinklab_step_s": summarize([s.wall for s in lightning_steps]),
        "plain_step_s": summarize([s.wall for s in plain_steps]),
        "probe_in_run_s": summarize(probe_each) if probe_each else None,
        "checkpoint_s": summarize(ckpt_each) if ckpt_each else None,
        "validation_s": summarize(val_each) if val_each else None,
        "last_run": last_run,
    }


def probe_costs(recipe: Recipe, opts: Options, paths: dict[str, Any]) -> dict[str, Any]:
    """Requirement 3: one probe pass, the projected share of a default run, reanalysis."""
    run = recipe.run
    probe_set = recipe.datamodule.probe_set()
    model = Transformer(ModelConfig.from_dict(recipe.model))
    one = probe_pass_seconds(
        model, probe_set, run.metrics, run.probe.batch_size, opts.probe_repeats
    )
    step_s = paths["sinklab_step_s"].median
    default = compose_run(
        bench_overrides(opts.out / "scratch", threads=opts.threads, logger=opts.logger)
    )
    in_run = paths["probe_in_run_s"].median if paths["probe_in_run_s"] else one.median
    projection = project_default_run(
        default.trainer.max_steps,
        (default.probe.log_spaced_until, default.probe.every),
        (default.checkpoint.log_spaced_until, default.checkpoint.every)
        if default.checkpoint.enabled
        else None,
        default.trainer.val_every_n_steps,
        step_s=step_s,
        probe_s=in_run,
        checkpoint_s=paths["checkpoint_s"].median if paths["checkpoint_s"] else 0.0,
        validation_s=paths["validation_s"].median if paths["validation_s"] else 0.0,
    )
    out: dict[str, Any] = {
        "probe_windows": list(probe_set.input_ids.shape),
        "probe_pass_s": one,
        "probe_pass_in_steps": one.median / step_s,
        "probe_in_run_s": in_run,
        "projection": projection,
        "probe_share": projection.probe_share,
    }
    last = paths["last_run"]
    ckpts = sorted(p for p in (last.result.checkpoints if last else []) if p.name != "last.ckpt")
    if ckpts and opts.reanalysis:
        cost = reanalysis_cost(ckpts, probe_set, run.metrics, run.probe.batch_size, opts.reanalysis)
        out["reanalysis"] = {
            "count": len(cost.seconds),
            "distinct_checkpoints": len(ckpts),
            "per_checkpoint_s": cost.per_checkpoint,
            "slope_s_per_checkpoint": cost.slope_s_per_checkpoint,
            "late_over_early": cost.late_over_early,
            "rss_mb": cost.rss_mb,
            "rss_growth_mb": cost.rss_growth_mb,
            "seconds": cost.seconds,
        }
    return out


def variant_list(kind: str) -> list[tuple[str, dict[str, Any]]]:
    variants: list[tuple[str, dict[str, Any]]] = [
        ("rope / softmax", {"pos": "rope", "attention": "softmax"})
    ]
    if kind in ("all", "pos"):
        variants += [
            (f"{p} / softmax", {"pos": p, "attention": "softmax"}) for p in POSITIONS if p != "rope"
        ]
    if kind in ("all", "attention"):
        variants += [
            (f"rope / {a}", {"pos": "rope", "attention": a}) for a in ATTENTIONS if a != "softmax"
        ]
    return variants


def mfu_table(recipe: Recipe, opts: Options) -> list[dict[str, Any]]:
    """Requirement 2: throughput of the plain loop (which sinklab matches, see the ratio) per
    variant; MFU is filled in by `add_mfu` once the run's best peak is known."""
    base = preset(opts.mfu_model)
    seq = recipe.run.data.seq_len
    rows = []
    for name, over in variant_list(opts.variants):
        model_over = {**base, **over}
        cfg = ModelConfig.from_dict({**recipe.model, **model_over})
        steps = plain_step_seconds(
            recipe, opts.mfu_steps + 3, model_overrides=model_over, compile=opts.compile
        )[3:]
        got = rates(recipe.tokens_per_step, steps)
        fpt = flops_per_token(cfg, seq)
        rows.append(
            {
                "variant": name,
                "model": opts.mfu_model,
                "tokens_per_s": got.wall,
                "tokens_per_cpu_s": got.cpu,
                "flops_per_token": fpt,
                "gflops": got.wall * fpt / 1e9,
            }
        )
        log(f"{opts.mfu_model} {name}: {got.wall:.0f} tok/s ({got.cpu:.0f} per CPU-second)")
    return rows


def add_mfu(row: dict[str, Any], peak: Peak, wall_key: str, cpu_key: str, fpt: float) -> None:
    """MFU by the wall clock (against the wall-clock peak) and per CPU-second (against the
    CPU-clock peak): the second removes time other jobs held our core."""
    row["mfu"] = mfu(row[wall_key], fpt, peak.wall)
    row["mfu_cpu"] = mfu(row[cpu_key], fpt, peak.cpu)


# -- rendering -------------------------------------------------------------------------------


def render(rec: dict[str, Any]) -> str:
    m, pk, paths, costs = rec["machine"], rec["peak"], rec["paths"], rec["costs"]
    o = rec["options"]
    rm = rec["recipe_mfu"]
    lines = [
        "## sinklab benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, device {m['device']}"
        + (f" ({m['gpu']})" if m.get("gpu") else "")
        + f", {m['threads']} torch thread(s); load average at start {m['load_avg_start'][0]:.2f}, at end {m['load_avg_end'][0]:.2f}.",
        f"Recipe: {rec['recipe']}.",
        f"Peak {pk.dtype} matmul ({pk.size}x{pk.size}), best of the run: {pk.wall / 1e9:.1f} GFLOP/s by the wall clock, "
        f"{pk.cpu / 1e9:.1f} per CPU-second (readings {', '.join(f'{r.wall / 1e9:.0f}' for r in rec['peak_readings'])}).",
        "",
        f"### 1. Throughput: sinklab (Lightning, default callbacks) vs plain PyTorch ({o['steps']} steps per run, first {o['warmup']} left out)",
        "",
        report.table(
            [
                "repeat",
                "order",
                "sinklab tok/s",
                "plain tok/s",
                "ratio a/b",
                "ratio per CPU-second",
            ],
            [
                [
                    r["repeat"],
                    r["order"],
                    r["sinklab"],
                    r["plain"],
                    f"{r['ratio']:.3f}",
                    f"{r['ratio_cpu']:.3f}",
                ]
                for r in paths["repeats"]
            ],
        ),
        "",
        f"**Ratio a/b: median {paths['ratio'].median:.3f}** (min {paths['ratio'].min:.3f}, max {paths['ratio'].max:.3f}, "
        f"spread {100 * paths['ratio'].spread:.1f} %); per CPU-second median {paths['ratio_cpu'].median:.3f} "
        f"(spread {100 * paths['ratio_cpu'].spread:.1f} %). Target >= 0.95.",
        f"MFU at this recipe ({rm['flops_per_token'] / 1e6:.2f} MFLOP/token): sinklab {report.pct(rm['sinklab']['mfu'])} "
        f"(per CPU-second {report.pct(rm['sinklab']['mfu_cpu'])}), plain {report.pct(rm['plain']['mfu'])} "
        f"({report.pct(rm['plain']['mfu_cpu'])}).",
        "",
        "### 2. MFU per position encoding and attention variant (plain loop, model preset "
        f"`{o['mfu_model']}`, same data and batch; target >= 40 %)",
        "",
        report.table(
            [
                "pos / attention",
                "tok/s",
                "MFLOP/token",
                "GFLOP/s",
                "MFU",
                "tok per CPU-s",
                "MFU per CPU-s",
            ],
            [
                [
                    r["variant"],
                    r["tokens_per_s"],
                    r["flops_per_token"] / 1e6,
                    r["gflops"],
                    report.pct(r["mfu"]),
                    r["tokens_per_cpu_s"],
                    report.pct(r["mfu_cpu"]),
                ]
                for r in rec["mfu"]
            ],
        ),
        "",
        "### 3. Probe and reanalysis cost",
        "",
    ]
    proj = costs["projection"]
    cost_rows = [
        [
            f"one probe pass ({costs['probe_windows'][0]} windows x {costs['probe_windows'][1]})",
            f"{costs['probe_pass_s'].median:.3f} s = {costs['probe_pass_in_steps']:.2f} training steps",
        ],
        ["one probe inside a run (measure + parquet + log)", f"{costs['probe_in_run_s']:.3f} s"],
        [
            f"probes' share of a default run ({proj.steps} steps, {proj.n_probes} probes, {proj.n_checkpoints} checkpoints, {proj.n_validations} validations)",
            f"{report.pct(costs['probe_share'], 2)} of {proj.total_s:.0f} s (target <= 3 %)",
        ],
    ]
    re = costs.get("reanalysis")
    if re:
        cost_rows += [
            [
                f"reanalysis per checkpoint (load + measure, {re['count']} in a row)",
                f"{re['per_checkpoint_s'].median:.3f} s (min {re['per_checkpoint_s'].min:.3f}, max {re['per_checkpoint_s'].max:.3f})",
            ],
            [
                "growth: slope of cumulative time; late-half / early-half cost",
                f"{re['slope_s_per_checkpoint']:.3f} s per checkpoint; {re['late_over_early']:.2f}",
            ],
            [
                "RSS after first -> last checkpoint",
                f"{re['rss_mb'][0]:.0f} MB -> {re['rss_mb'][-1]:.0f} MB ({re['rss_growth_mb']:+.1f} MB)",
            ],
        ]
    cost_rows.append(
        ["Bigram-Backcopy generator, one core", f"{rec['generator']:,.0f} tokens/s (target >= 1M)"]
    )
    lines += [report.table(["figure", "value"], cost_rows), ""]
    lines += [
        f"### 4. Attention kernels ({m['device']})",
        "",
        report.table(
            ["variant", "SDPA ops that ran (forward)", "flash", "forced flash backend"],
            [
                [
                    k["variant"],
                    ", ".join(k["sdpa_ops"]) or "-",
                    k["flash"],
                    report.fmt(k["forced_flash_ok"]),
                ]
                for k in rec["kernels"]
            ],
        ),
        "",
    ]
    prof = rec.get("profile")
    if prof:
        lines += [
            f"### 5. Where a `{o['mfu_model']}` rope/softmax step's time goes (torch.profiler, self CPU time)",
            "",
            report.table(
                ["bucket", "share"], [[k, report.pct(v)] for k, v in prof["shares"].items()]
            ),
            "",
            f"The matmul bucket alone runs at {prof['matmul_gflops']:.0f} GFLOP/s (6N FLOPs per token over its time).",
            "",
        ]
    lines += [
        f"Command: `{rec['command']}` ({rec['seconds']:.0f} s)",
    ]
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, Any]:
    opts = parse_args(argv)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    torch.set_num_threads(opts.threads)
    started = time.perf_counter()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    runs_dir = (opts.out / "runs" / stamp).resolve()
    rec: dict[str, Any] = {
        "machine": machine(opts),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()},
    }
    args = sys.argv[1:] if argv is None else argv
    rec["command"] = "make bench" + (f' ARGS="{" ".join(args)}"' if args else "")
    dev = torch.device(opts.device)
    peaks = [matmul_peak(dev)]
    log(f"peak {peaks[0].wall / 1e9:.1f} GFLOP/s")

    run = compose_run(
        bench_overrides(
            runs_dir,
            threads=opts.threads,
            device=opts.device,
            compile=opts.compile,
            logger=opts.logger,
            extra=[
                f"trainer.max_steps={opts.steps}",
                f"trainer.val_every_n_steps={max(2, opts.steps // 2)}",
                *(f"model.{k}={v}" for k, v in (preset(opts.model) if opts.model else {}).items()),
                *opts.overrides,
            ],
        )
    )
    recipe = build_recipe(run, opts.device)
    rec["recipe"] = (
        f"{run.experiment_name}: {recipe.model['n_layers']} layers, d {recipe.model['d_model']}, {recipe.model['n_heads']} heads, "
        f"pos {recipe.model['pos']}, vocab {recipe.model['vocab_size']}, batch {run.data.batch_size}x{run.data.seq_len}, "
        f"{run.optim.name}, {run.trainer.precision}, logger {opts.logger}, compile {opts.compile}"
    )
    rec["generator"] = (
        tokens_per_second(recipe.datamodule.batches.task)
        if run.data.source == "synthetic"
        else float("nan")
    )
    log(f"generator {rec['generator']:,.0f} tokens/s")

    paths = compare_paths(recipe, opts, runs_dir)
    peaks.append(matmul_peak(dev))
    costs = probe_costs(recipe, opts, paths)
    log(
        f"probe pass {costs['probe_pass_s'].median:.3f} s, share {100 * costs['probe_share']:.2f} %"
    )
    rec["mfu"] = mfu_table(recipe, opts)
    peaks.append(matmul_peak(dev))
    peak = best_peak(peaks)
    for row in rec["mfu"]:
        add_mfu(row, peak, "tokens_per_s", "tokens_per_cpu_s", row["flops_per_token"])
    fpt = flops_per_token(ModelConfig.from_dict(recipe.model), run.data.seq_len)
    rec["recipe_mfu"] = {"flops_per_token": fpt}
    for who in ("sinklab", "plain"):
        row = {
            "tokens_per_s": paths[f"{who}_tokens_per_s"].median,
            "tokens_per_cpu_s": paths[f"{who}_tokens_per_cpu_s"].median,
        }
        add_mfu(row, peak, "tokens_per_s", "tokens_per_cpu_s", fpt)
        rec["recipe_mfu"][who] = row
    rec["peak"], rec["peak_readings"] = peak, peaks
    kernel_variants = list(KERNEL_VARIANTS.items())[: 1 if opts.quick else None]
    tiny = preset(opts.mfu_model)
    rec["kernels"] = [
        vars(attention_kernel_report({**recipe.model, **tiny, **over}, name, opts.device))
        for name, over in kernel_variants
    ]
    if dev.type == "cpu":
        rec["profile"] = step_profile(
            recipe, {**tiny, "pos": "rope", "attention": "softmax"}, steps=1 if opts.quick else 4
        )
    rec["machine"]["load_avg_end"] = os.getloadavg()
    paths.pop("last_run")
    rec["paths"], rec["costs"] = paths, costs
    rec["seconds"] = time.perf_counter() - started
    markdown = render(rec)
    md, js = report.write_outputs(opts.out, f"bench-{stamp}", markdown, rec)
    print(markdown)
    print(f"\n(wrote {md} and {js})")
    if not opts.keep_runs:
        shutil.rmtree(runs_dir, ignore_errors=True)
        shutil.rmtree(opts.out / "scratch", ignore_errors=True)
    return rec


if __name__ == "__main__":
    main()
