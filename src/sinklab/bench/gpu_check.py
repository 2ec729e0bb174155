"""`make gpu-check`'s figures (`scripts/gpu_check.py`; issue 19, items 1 and 3): at gu60m
with a realistic batch, on one CUDA GPU, bf16-mixed and compiled, within about 5 minutes:

- sinklab's Lightning path against the plain PyTorch loop (tokens/s, interleaved a-b, b-a);
- one probe pass, in seconds and in training steps, bare (`measure_probe_set`, the metric
  maths on the GPU as `callbacks.probe.measure_on: device` runs it, and on the host for
  comparison) and as the run paid it (streaming evaluation included);
- the probes' projected share of a 2,000-step run with the default probe schedule.

It reuses the benchmark's pieces (`sinklab.bench`), so the figures mean what `make bench`'s
mean. Without a GPU it says so and exits 0: CI and the CPU VM have none. `--device cpu` runs
the same code on the CPU, fp32 and not compiled, at any batch: a smoke run of the check
itself (tests/bench/test_gpu_check.py), whose figures say nothing about a GPU.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from sinklab.analysis.pipeline import measure_probe_set
from sinklab.atomic import atomic_write
from sinklab.bench.costs import project_default_run
from sinklab.bench.recipe import bench_overrides, compose_run
from sinklab.bench.sections import Options, bench_recipe, compare_paths, log
from sinklab.bench.timing import summarize, sync
from sinklab.model import ModelConfig, Transformer

MIN_TOKENS = 65_536  # the "realistic batch": at least 64k tokens per optimizer step


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gpu_check", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default="cuda",
        help="cuda (default): the check; cpu: a smoke run of this script, fp32, any batch",
    )
    p.add_argument("--model", default="gu60m", help="model preset (default gu60m)")
    p.add_argument(
        "--experiment",
        default="shakespeare_text",
        help="the recipe (default shakespeare_text: real text and BPE, as the H200 run)",
    )
    p.add_argument("--seq-len", type=int, default=2048, help="tokens per window (default 2048)")
    p.add_argument("--batch-size", type=int, default=32, help="windows per step (default 32)")
    p.add_argument("--steps", type=int, default=40, help="steps per timed run (default 40)")
    p.add_argument("--warmup", type=int, default=10, help="leading steps not timed (default 10)")
    p.add_argument("--repeats", type=int, default=2, help="a-b / b-a repeats (default 2)")
    p.add_argument("--probe-repeats", type=int, default=3, help="timed probe passes (default 3)")
    p.add_argument("--run-steps", type=int, default=2000, help="projected run (default 2000)")
    p.add_argument("--out", type=Path, default=Path("outputs/gpu_check"), help="JSON goes here")
    return p


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    a = parser.parse_args(argv)
    if a.device == "cuda" and a.seq_len * a.batch_size < MIN_TOKENS:
        parser.error(f"--batch-size: seq_len x batch_size must be >= {MIN_TOKENS} tokens")
    if a.steps - a.warmup < 3:
        parser.error(f"--warmup: must leave 3 of --steps ({a.steps}) to time, got {a.warmup}")
    for name in ("repeats", "probe_repeats", "run_steps"):
        if getattr(a, name) < 1:
            parser.error(f"--{name.replace('_', '-')}: must be >= 1")
    return a


def options(a: argparse.Namespace, runs_dir: Path) -> Options:
    """The bench's options for this check: the GPU, compiled, the text recipe at `--model`,
    probes and checkpoints only at the first and last step (the steady steps stay clean).
    On the CPU (`--device cpu`), fp32 and not compiled, as `make bench` runs there."""
    return Options(
        quick=False,
        repeats=a.repeats,
        steps=a.steps,
        warmup=a.warmup,
        threads=1,
        device=a.device,
        compile=a.device == "cuda",
        logger="csv",
        variants="default",
        mfu_model=a.model,
        model=a.model,
        mfu_steps=1,
        reanalysis=0,
        probe_repeats=a.probe_repeats,
        out=runs_dir,
        keep_runs=False,
        overrides=[
            f"experiment={a.experiment}",
            f"data.seq_len={a.seq_len}",
            f"model.max_seq_len={a.seq_len}",
            f"data.batch_size={a.batch_size}",
            "data.val_batches=1",
            "callbacks.checkpoint.log_spaced_until=0",
            f"callbacks.checkpoint.every={a.steps}",
        ],
    )


def probe_pass(model_dict: dict[str, Any], recipe: Any, measure_on: str) -> Callable[[], Any]:
    """One probe pass as the callback runs it (fp32, forward on the recipe's device, the
    metric maths on `measure_on`), as a function to time or to watch."""
    device = recipe.device
    model = Transformer(ModelConfig.from_dict(model_dict)).to(device)
    probe_set = recipe.datamodule.probe_set()
    run = recipe.run
    return lambda: measure_probe_set(
        model,
        probe_set,
        run.metrics,
        batch_size=run.probe.batch_size,
        device=device,
        measure_on=measure_on,
    )


def bare_probe_seconds(
    model_dict: dict[str, Any], recipe: Any, repeats: int, measure_on: str
) -> list[float]:
    """Seconds of `repeats` probe passes (`probe_pass`), after one warm-up pass."""
    device = recipe.device
    run_pass = probe_pass(model_dict, recipe, measure_on)

    def once() -> float:
        sync(device)
        start = time.perf_counter()
        run_pass()
        sync(device)
        return time.perf_counter() - start

    once()
    return [once() for _ in range(repeats)]


def host_syncs(fn: Callable[[], Any], device: torch.device) -> int | None:
    """How many times `fn` made the host wait for the GPU, counted by CUDA's sync debug mode
    (a warning at every synchronizing call); None when `fn` runs on the CPU."""
    if device.type != "cuda":
        return None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
            torch.cuda.synchronize()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def device_name(device: str) -> str:
    """The GPU's name; on the CPU, the processor's (what `make bench` reports too)."""
    if device == "cuda":
        return torch.cuda.get_device_name()
    return platform.processor() or platform.machine() or "CPU"


def measure(a: argparse.Namespace) -> dict[str, Any]:
    runs_dir = (a.out / "runs").resolve()
    opts = options(a, runs_dir)
    recipe = bench_recipe(opts, runs_dir)
    tokens = recipe.tokens_per_step
    log(f"{device_name(a.device)}: {a.model}, {tokens:,} tokens per step")
    paths, _ = compare_paths(recipe, opts, runs_dir)
    step_s = paths["sinklab_step_s"].median
    bare = summarize(bare_probe_seconds(recipe.model, recipe, a.probe_repeats, "device"))
    host = summarize(bare_probe_seconds(recipe.model, recipe, a.probe_repeats, "host"))
    in_run = paths["probe_in_run_s"].median if paths["probe_in_run_s"] else bare.median
    schedule = compose_run(bench_overrides(runs_dir / "default", threads=1, logger="csv")).probe
    projection = project_default_run(
        a.run_steps,
        (schedule.log_spaced_until, schedule.every),
        None,
        a.run_steps + 1,  # validation and checkpoints left out: the probes' share alone
        step_s=step_s,
        probe_s=in_run,
        checkpoint_s=0.0,
        validation_s=0.0,
    )
    return {
        "gpu": device_name(a.device),
        "device": a.device,
        "precision": "bf16-mixed, compiled" if a.device == "cuda" else "fp32, not compiled",
        "torch": torch.__version__,
        "model": a.model,
        "tokens_per_step": tokens,
        "sinklab_tokens_per_s": paths["sinklab_tokens_per_s"].median,
        "plain_tokens_per_s": paths["plain_tokens_per_s"].median,
        "sinklab_over_plain": [row["ratio"] for row in paths["repeats"]],
        "step_s": step_s,
        "probe_pass_s": bare.median,
        "probe_pass_in_steps": bare.median / step_s,
        "probe_pass_host_s": host.median,
        "probe_pass_syncs": host_syncs(probe_pass(recipe.model, recipe, "device"), recipe.device),
        "n_layers": int(recipe.model.get("n_layers", 0)),
        "probe_in_run_s": in_run,
        "probe_in_run_in_steps": in_run / step_s,
        "run_steps": a.run_steps,
        "projected_probes": projection.n_probes,
        "projected_probe_share_pct": 100 * projection.probe_share,
    }


def render(rec: dict[str, Any], seconds: float) -> str:
    syncs = (
        "not counted (no GPU)"
        if rec["probe_pass_syncs"] is None
        else f"{rec['probe_pass_syncs']} in one pass ({rec['n_layers']} layers; the capture, "
        "the eigen-solvers and the row copies)"
    )
    ratios = ", ".join(f"{r:.3f}" for r in rec["sinklab_over_plain"])
    return "\n".join(
        [
            f"gpu-check on {rec['gpu']} (torch {rec['torch']}), {rec['model']}, "
            f"{rec['tokens_per_step']:,} tokens per step, {rec['precision']}:",
            f"  sinklab            {rec['sinklab_tokens_per_s']:,.0f} tokens/s",
            f"  plain loop         {rec['plain_tokens_per_s']:,.0f} tokens/s",
            f"  sinklab / plain    {ratios} (target >= 0.95)",
            f"  probe pass         {rec['probe_pass_s']:.3f} s = "
            f"{rec['probe_pass_in_steps']:.1f} training steps (target <= 5; "
            f"{rec['probe_pass_host_s']:.3f} s with the metric maths on the host)",
            f"  host syncs         {syncs}",
            f"  probe in the run   {rec['probe_in_run_s']:.3f} s = "
            f"{rec['probe_in_run_in_steps']:.1f} steps (streaming evaluation included)",
            f"  probe share        {rec['projected_probe_share_pct']:.2f} % of a "
            f"{rec['run_steps']}-step run, {rec['projected_probes']} probes (target <= 3 %)",
            f"  took               {seconds:.0f} s",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    if a.device == "cuda" and not torch.cuda.is_available():
        print("gpu-check: no CUDA GPU present; nothing measured (the GPU tests skip too)")
        return 0
    started = time.perf_counter()
    try:
        rec = measure(a)
    finally:  # the timed runs are scratch: at gu60m their checkpoints take gigabytes
        shutil.rmtree(a.out / "runs", ignore_errors=True)
    seconds = time.perf_counter() - started
    rec["seconds"] = seconds
    print(render(rec, seconds))
    path = a.out / f"gpu-check-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(rec, indent=2).encode()
    atomic_write(path, lambda fh: fh.write(text))
    print(f"(wrote {path})")
    return 0
