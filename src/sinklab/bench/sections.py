"""The benchmark's sections: each measures one thing and returns plain records for the report.

In the order `cli.main` runs them (the matmul peak is read between them, see `cli`):
1. the Bigram-Backcopy generator's speed on one core (`generator_speed`);
2. sinklab's Lightning path against the plain loop, interleaved a-b, b-a, ... (`compare_paths`);
3. one probe pass, the probes' projected share of a default run, reanalysis cost and memory,
   and what the optional parts cost in probe passes: the outlier metrics, the streaming
   evaluation, one W8A8 evaluation (`probe_costs`);
4. MFU per position encoding and attention variant, `tiny` preset, plain loop (`mfu_table`);
5. which SDPA kernel each softmax variant runs (`kernel_table`);
6. where a step's time goes, on the CPU (`profile_section`);
7. the encoder (model.causal=false) against the decoder of the same size (`encoder_vs_decoder`).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from sinklab.bench.costs import (
    ReanalysisCost,
    RunProjection,
    probe_pass_seconds,
    project_default_run,
    reanalysis_cost,
)
from sinklab.bench.kernels import attention_kernel_report
from sinklab.bench.lightning_path import LightningTiming, run_lightning
from sinklab.bench.peak import Peak, mfu
from sinklab.bench.plain import plain_step_seconds
from sinklab.bench.profile import step_profile
from sinklab.bench.recipe import Recipe, bench_overrides, build_recipe, compose_run, preset
from sinklab.bench.timing import Stamp, Summary, abba_order, rates, summarize, timed
from sinklab.data import tokens_per_second
from sinklab.model import ModelConfig, Transformer, flops_per_token
from sinklab.model.config import ATTENTIONS, POSITIONS
from sinklab.runs.layout import LAST_CHECKPOINT

KERNEL_VARIANTS = {  # name: model overrides; the first three must reach the flash kernel
    "rope softmax": {"pos": "rope"},
    "learned softmax": {"pos": "learned"},
    "none softmax": {"pos": "none"},
    "alibi softmax": {"pos": "alibi"},
    "rope sink_logit": {"pos": "rope", "attention": "sink_logit"},
}


@dataclass
class Options:
    """What one benchmark run measures; `cli.parse_args` builds and validates it."""

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

    def to_record(self) -> dict[str, Any]:
        """The options as JSON-ready values (paths as strings), for the record."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in vars(self).items()}


def log(msg: str) -> None:
    """Progress on stderr, so stdout carries only the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def machine_info(opts: Options) -> dict[str, Any]:
    """What the figures were measured on, load average included (the machine is shared)."""
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


def bench_recipe(opts: Options, runs_dir: Path) -> Recipe:
    """The default recipe, shortened to `opts.steps`, with the `--model` preset and `--set`
    overrides applied: the one configuration both contenders train."""
    model_over = preset(opts.model) if opts.model else {}
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
                *(f"model.{k}={v}" for k, v in model_over.items()),
                *opts.overrides,
            ],
        )
    )
    return build_recipe(run, opts.device)


def generator_speed(recipe: Recipe) -> float:
    """Bigram-Backcopy tokens per second on one core (NaN when the recipe reads real text)."""
    speed = (
        tokens_per_second(recipe.datamodule.batches.task)
        if recipe.run.data.source == "synthetic"
        else float("nan")
    )
    log(f"generator {speed:,.0f} tokens/s")
    return speed


# -- 2. sinklab vs the plain loop --------------------------------------------------------------


@dataclass
class PathSamples:
    """What the interleaved repeats collect besides each repeat's rates: every steady step,
    the per-event costs seen inside the real runs, and the last run (its checkpoints feed the
    reanalysis figures)."""

    sinklab_steps: list[Stamp] = field(default_factory=list)
    plain_steps: list[Stamp] = field(default_factory=list)
    probe_each: list[float] = field(default_factory=list)
    checkpoint_each: list[float] = field(default_factory=list)
    validation_each: list[float] = field(default_factory=list)
    last_run: LightningTiming | None = None


def _time_sinklab(recipe: Recipe, opts: Options, run_dir: Path, samples: PathSamples) -> Stamp:
    """One `train()` run; its steady-step rates, its per-event costs into `samples`."""
    timing = run_lightning(recipe.run, run_dir, skip=opts.warmup)
    res = timing.result
    samples.sinklab_steps += timing.step_seconds
    if timing.n_probes:
        samples.probe_each.append(res.probe_seconds / timing.n_probes)
    if res.checkpoints:
        samples.checkpoint_each.append(res.checkpoint_seconds / len(res.checkpoints))
    if timing.validation_runs:
        samples.validation_each.append(timing.validation_seconds / timing.validation_runs)
    samples.last_run = timing
    return rates(recipe.tokens_per_step, timing.step_seconds)


def _time_plain(recipe: Recipe, opts: Options, samples: PathSamples) -> Stamp:
    """The plain loop for as many steps; one extra leading step is run and dropped, as the
    Lightning side's first step has no previous mark to time it from."""
    steps = plain_step_seconds(recipe, opts.steps + 1, compile=opts.compile)
    steady = steps[opts.warmup + 1 :]
    samples.plain_steps += steady
    return rates(recipe.tokens_per_step, steady)


def _repeat_row(r: int, order: tuple[str, str], got: dict[str, Stamp]) -> dict[str, Any]:
    a, b = got["sinklab"], got["plain"]
    row = {
        "repeat": r,
        "order": "-".join(order),
        "sinklab": a.wall,
        "plain": b.wall,
        "ratio": a.wall / b.wall,
        "sinklab_cpu": a.cpu,
        "plain_cpu": b.cpu,
        "ratio_cpu": a.cpu / b.cpu,
    }
    log(
        f"repeat {r}: sinklab {row['sinklab']:.0f} tok/s, plain {row['plain']:.0f} tok/s, "
        f"ratio {row['ratio']:.3f} (per CPU-second {row['ratio_cpu']:.3f})"
    )
    return row


def _summary_or_none(values: list[float]) -> Summary | None:
    return summarize(values) if values else None


def _paths_record(rows: list[dict[str, Any]], samples: PathSamples) -> dict[str, Any]:
    def over_rows(key: str) -> Summary:
        return summarize([row[key] for row in rows])

    return {
        "repeats": rows,
        "ratio": over_rows("ratio"),
        "ratio_cpu": over_rows("ratio_cpu"),
        "sinklab_tokens_per_s": over_rows("sinklab"),
        "plain_tokens_per_s": over_rows("plain"),
        "sinklab_tokens_per_cpu_s": over_rows("sinklab_cpu"),
        "plain_tokens_per_cpu_s": over_rows("plain_cpu"),
        "sinklab_step_s": summarize([s.wall for s in samples.sinklab_steps]),
        "plain_step_s": summarize([s.wall for s in samples.plain_steps]),
        "probe_in_run_s": _summary_or_none(samples.probe_each),
        "checkpoint_s": _summary_or_none(samples.checkpoint_each),
        "validation_s": _summary_or_none(samples.validation_each),
    }


def compare_paths(
    recipe: Recipe, opts: Options, runs_dir: Path
) -> tuple[dict[str, Any], LightningTiming | None]:
    """sinklab (a) and the plain loop (b), interleaved, same config and data: the per-repeat
    rows and their summaries, and the last sinklab run (for `probe_costs`)."""
    rows: list[dict[str, Any]] = []
    samples = PathSamples()
    for r, order in enumerate(abba_order(opts.repeats, "sinklab", "plain")):
        got: dict[str, Stamp] = {}
        for who in order:
            if who == "sinklab":
                got[who] = _time_sinklab(recipe, opts, runs_dir / f"sinklab-{r}", samples)
            else:
                got[who] = _time_plain(recipe, opts, samples)
        rows.append(_repeat_row(r, order, got))
    return _paths_record(rows, samples), samples.last_run


# -- 3. probe and reanalysis cost --------------------------------------------------------------


def _median_or(summary: Summary | None, default: float) -> float:
    return summary.median if summary else default


def _project_default(opts: Options, paths: dict[str, Any], probe_s: float) -> RunProjection:
    """The default run's schedule (composed afresh, not the shortened recipe's), weighed by
    the costs measured here."""
    default = compose_run(
        bench_overrides(opts.out / "scratch", threads=opts.threads, logger=opts.logger)
    )
    checkpoints = default.checkpoint
    return project_default_run(
        default.trainer.max_steps,
        (default.probe.log_spaced_until, default.probe.every),
        (checkpoints.log_spaced_until, checkpoints.every) if checkpoints.enabled else None,
        default.trainer.val_every_n_steps,
        step_s=paths["sinklab_step_s"].median,
        probe_s=probe_s,
        checkpoint_s=_median_or(paths["checkpoint_s"], 0.0),
        validation_s=_median_or(paths["validation_s"], 0.0),
    )


def reanalysis_record(cost: ReanalysisCost, distinct: int) -> dict[str, Any]:
    """The reanalysis figures for the record; growth figures are NaN below two checkpoints."""
    return {
        "count": len(cost.seconds),
        "distinct_checkpoints": distinct,
        "per_checkpoint_s": cost.per_checkpoint,
        "slope_s_per_checkpoint": cost.slope_s_per_checkpoint,
        "late_over_early": cost.late_over_early,
        "rss_mb": cost.rss_mb,
        "rss_growth_mb": cost.rss_growth_mb,
        "seconds": cost.seconds,
    }


def probe_costs(
    recipe: Recipe, opts: Options, paths: dict[str, Any], last_run: LightningTiming | None
) -> dict[str, Any]:
    """One probe pass, the probes' projected share of a default run, and (from the last run's
    checkpoints) `opts.reanalysis` checkpoints reanalysed in a row."""
    run = recipe.run
    probe_set = recipe.datamodule.probe_set()
    model = Transformer(ModelConfig.from_dict(recipe.model))
    one = probe_pass_seconds(
        model,
        probe_set,
        run.metrics,
        run.probe.batch_size,
        opts.probe_repeats,
        run.probe.measure_on,
    )
    in_run = _median_or(paths["probe_in_run_s"], one.median)
    projection = _project_default(opts, paths, in_run)
    out: dict[str, Any] = {
        "probe_windows": list(probe_set.input_ids.shape),
        "probe_pass_s": one,
        "probe_pass_in_steps": one.median / paths["sinklab_step_s"].median,
        "probe_in_run_s": in_run,
        "projection": projection,
        "probe_share": projection.probe_share,
    }
    out.update(outlier_cost(run, model, probe_set, one.median, opts.probe_repeats))
    out.update(stream_cost(recipe, model, one.median, opts.probe_repeats))
    out.update(quant_cost(recipe, model, one.median, opts.probe_repeats))
    saved = last_run.result.checkpoints if last_run else []
    ckpts = sorted(p for p in saved if p.name != LAST_CHECKPOINT)
    if ckpts and opts.reanalysis:
        cost = reanalysis_cost(ckpts, probe_set, run.metrics, run.probe.batch_size, opts.reanalysis)
        out["reanalysis"] = reanalysis_record(cost, len(ckpts))
    log(f"probe pass {one.median:.3f} s, share {100 * projection.probe_share:.2f} %")
    return out


def stream_cost(
    recipe: Recipe, model: torch.nn.Module, probe_s: float, repeats: int
) -> dict[str, Any]:
    """One streaming evaluation with the run's `callbacks.probe.stream` settings on the
    recipe's window, in seconds and in probe passes (after one warm-up); {} when it is off."""
    from sinklab.analysis.streaming import stream_eval

    section = recipe.run.probe.stream
    if not (recipe.run.probe.enabled and section.enabled):
        return {}
    cfg = section.resolved(recipe.run.data.seq_len)
    assert cfg.stream_len is not None
    ids = torch.from_numpy(recipe.datamodule.batches.stream(cfg.stream_len))
    one = timed(lambda: stream_eval(model, ids, cfg), repeats)
    conditions = [c.name for c in cfg.condition_list()]
    log(f"streaming evaluation {one.median:.3f} s ({one.median / probe_s:.2f} probe passes)")
    return {
        "stream_eval_s": one,
        "stream_in_probes": one.median / probe_s,
        "stream_setup": f"T {cfg.stream_len}, C {cfg.cache_len}, {', '.join(conditions)}, "
        f"oracle stride {cfg.recompute_stride}, every {cfg.every_n_probes} probe(s)",
    }


def outlier_cost(
    run: Any, model: torch.nn.Module, probe_set: Any, probe_s: float, repeats: int
) -> dict[str, Any]:
    """What the outlier group adds to a probe pass: the pass without it, timed like the full
    one (`probe_s`, the group on as in the default run); {} when the run has it off."""
    from dataclasses import replace

    if not run.metrics.outliers:
        return {}
    without = probe_pass_seconds(
        model, probe_set, replace(run.metrics, outliers=False), run.probe.batch_size, repeats
    )
    added = (probe_s - without.median) / without.median
    log(f"outlier metrics +{added:.2f} probe passes ({without.median:.3f} s without them)")
    return {"probe_pass_no_outliers_s": without, "outliers_in_probes": added}


def quant_cost(
    recipe: Recipe, model: torch.nn.Module, probe_s: float, repeats: int
) -> dict[str, Any]:
    """One W8A8 evaluation with the run's `callbacks.probe.quant` settings (switched on, as for
    any decoder by default), on the run's own windows and calibration batches, in seconds and in probe
    passes, after one warm-up; {} for an encoder (it refuses them)."""
    from dataclasses import replace

    if not recipe.run.model.get("causal", True):
        return {}
    cfg = replace(recipe.run.probe.quant, enabled=True)
    q = cfg.quantizer
    ids = recipe.datamodule.quant_ids(cfg.eval_windows, q.calibration_batches)
    one = timed(lambda: cfg.evaluate(model, ids.eval_ids, ids.calib, ids.bos_id), repeats)
    n, T = ids.eval_ids.shape
    prefixes = f", prefixes {', '.join(cfg.prefix.prefixes)}" if cfg.prefix.prefixes else ""
    log(f"W8A8 evaluation {one.median:.3f} s ({one.median / probe_s:.2f} probe passes)")
    return {
        "quant_eval_s": one,
        "quant_in_probes": one.median / probe_s,
        "quant_setup": f"{n} x {T} windows, {q.calibration_batches} calibration batches of "
        f"{ids.calib.shape[1]}, W{q.bits}A{q.bits}, {len(q.modes)} modes{prefixes}",
    }


# -- 4. MFU ------------------------------------------------------------------------------------


def variant_list(kind: str) -> list[tuple[str, dict[str, Any]]]:
    """`--variants`: rope/softmax always, then every other position and/or attention."""
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
    """Throughput of the plain loop (which sinklab matches, see the ratio) per variant; MFU is
    filled in by `add_mfu` once the run's best peak is known."""
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


def encoder_vs_decoder(recipe: Recipe, opts: Options) -> dict[str, Any]:
    """Issue 17: the encoder (model.causal=false) against the decoder of the same size, plain
    loop, same batches (the recipe's; the loss mask does not change the work: logits are
    computed at every position either way), repeats alternated a-b, b-a, ... so drift in the
    machine's load hits both alike. Target: ratio >= 0.9."""
    got: dict[str, list[float]] = {"decoder": [], "encoder": []}
    for r, order in enumerate(abba_order(opts.repeats, "decoder", "encoder")):
        for name in order:
            over = {"causal": name == "decoder"}
            steps = plain_step_seconds(
                recipe, opts.mfu_steps + 3, model_overrides=over, compile=opts.compile
            )[3:]
            got[name].append(rates(recipe.tokens_per_step, steps).wall)
        log(f"repeat {r}: decoder {got['decoder'][-1]:.0f}, encoder {got['encoder'][-1]:.0f} tok/s")
    ratios = [e / d for e, d in zip(got["encoder"], got["decoder"], strict=True)]
    return {
        "decoder": summarize(got["decoder"]),
        "encoder": summarize(got["encoder"]),
        "ratio": summarize(ratios),
        "load_avg": os.getloadavg(),
    }


def add_mfu(row: dict[str, Any], peak: Peak, fpt: float) -> None:
    """MFU by the wall clock (against the wall-clock peak) and per CPU-second (against the
    CPU-clock peak): the second removes time other jobs held our core."""
    row["mfu"] = mfu(row["tokens_per_s"], fpt, peak.wall)
    row["mfu_cpu"] = mfu(row["tokens_per_cpu_s"], fpt, peak.cpu)


def recipe_mfu(recipe: Recipe, paths: dict[str, Any], peak: Peak) -> dict[str, Any]:
    """MFU of both contenders at the benchmarked recipe, from their median rates."""
    fpt = flops_per_token(ModelConfig.from_dict(recipe.model), recipe.run.data.seq_len)
    out: dict[str, Any] = {"flops_per_token": fpt}
    for who in ("sinklab", "plain"):
        row = {
            "tokens_per_s": paths[f"{who}_tokens_per_s"].median,
            "tokens_per_cpu_s": paths[f"{who}_tokens_per_cpu_s"].median,
        }
        add_mfu(row, peak, fpt)
        out[who] = row
    return out


# -- 5, 6. kernels and profile -----------------------------------------------------------------


def kernel_table(recipe: Recipe, opts: Options) -> list[dict[str, Any]]:
    """The SDPA kernels each variant runs (only the first variant when `--quick`)."""
    variants = list(KERNEL_VARIANTS.items())[: 1 if opts.quick else None]
    base = preset(opts.mfu_model)
    return [
        vars(attention_kernel_report({**recipe.model, **base, **over}, name, opts.device))
        for name, over in variants
    ]


def profile_section(recipe: Recipe, opts: Options) -> dict[str, Any]:
    """Where a `--mfu-model` rope/softmax step's time goes (torch.profiler, CPU only)."""
    model_over = {**preset(opts.mfu_model), "pos": "rope", "attention": "softmax"}
    return step_profile(recipe, model_over, steps=1 if opts.quick else 4)
