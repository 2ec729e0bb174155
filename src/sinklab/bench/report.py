"""The benchmark's report: the record rendered as markdown (terminal, README), and the JSON
record written beside it. Formatting helpers first, then one renderer per section."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sinklab.bench.recipe import Recipe


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers to short strings; None and NaN become a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.{digits}f} %"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; cells that are not strings go through `fmt`."""
    cells = [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def write_outputs(
    out_dir: Path, stem: str, markdown: str, record: dict[str, Any]
) -> tuple[Path, Path]:
    """`<stem>.md` and `<stem>.json` under `out_dir`, plus `latest.md`/`latest.json` copies."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    text = json.dumps(record, indent=2, default=_jsonable)
    md_path.write_text(markdown + "\n")
    json_path.write_text(text + "\n")
    (out_dir / "latest.md").write_text(markdown + "\n")
    (out_dir / "latest.json").write_text(text + "\n")
    return md_path, json_path


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


# -- the markdown report -----------------------------------------------------------------------


def describe_recipe(recipe: Recipe, logger: str, compile: bool) -> str:
    """One line naming what both contenders train."""
    m, run = recipe.model, recipe.run
    return (
        f"{run.experiment_name}: {m['n_layers']} layers, d {m['d_model']}, {m['n_heads']} heads, "
        f"pos {m['pos']}, vocab {m['vocab_size']}, "
        f"batch {run.data.batch_size}x{run.data.seq_len}, {run.optim.name}, "
        f"{run.trainer.precision}, logger {logger}, compile {compile}"
    )


def header(rec: dict[str, Any]) -> list[str]:
    """Title, machine, recipe and the peak every MFU is measured against."""
    m, pk = rec["machine"], rec["peak"]
    gpu = f" ({m['gpu']})" if m.get("gpu") else ""
    readings = ", ".join(f"{r.wall / 1e9:.0f}" for r in rec["peak_readings"])
    return [
        "## sinklab benchmark",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, device {m['device']}{gpu}, "
        f"{m['threads']} torch thread(s); load average at start {m['load_avg_start'][0]:.2f}, "
        f"at end {m['load_avg_end'][0]:.2f}.",
        f"Recipe: {rec['recipe']}.",
        f"Peak {pk.dtype} matmul ({pk.size}x{pk.size}), best of the run: "
        f"{pk.wall / 1e9:.1f} GFLOP/s by the wall clock, "
        f"{pk.cpu / 1e9:.1f} per CPU-second (readings {readings}).",
        "",
    ]


def throughput_section(rec: dict[str, Any]) -> list[str]:
    """1. sinklab against the plain loop, per repeat, then the median ratio and recipe MFU."""
    o, paths, rm = rec["options"], rec["paths"], rec["recipe_mfu"]
    ratio, ratio_cpu = paths["ratio"], paths["ratio_cpu"]
    headers = [
        "repeat",
        "order",
        "sinklab tok/s",
        "plain tok/s",
        "ratio a/b",
        "ratio per CPU-second",
    ]
    rows = [
        [
            r["repeat"],
            r["order"],
            r["sinklab"],
            r["plain"],
            f"{r['ratio']:.3f}",
            f"{r['ratio_cpu']:.3f}",
        ]
        for r in paths["repeats"]
    ]
    return [
        "### 1. Throughput: sinklab (Lightning, default callbacks) vs plain PyTorch "
        f"({o['steps']} steps per run, first {o['warmup']} left out)",
        "",
        table(headers, rows),
        "",
        f"**Ratio a/b: median {ratio.median:.3f}** (min {ratio.min:.3f}, max {ratio.max:.3f}, "
        f"spread {100 * ratio.spread:.1f} %); per CPU-second median {ratio_cpu.median:.3f} "
        f"(spread {100 * ratio_cpu.spread:.1f} %). Target >= 0.95.",
        f"MFU at this recipe ({rm['flops_per_token'] / 1e6:.2f} MFLOP/token): "
        f"sinklab {pct(rm['sinklab']['mfu'])} (per CPU-second {pct(rm['sinklab']['mfu_cpu'])}), "
        f"plain {pct(rm['plain']['mfu'])} ({pct(rm['plain']['mfu_cpu'])}).",
        "",
    ]


def mfu_section(rec: dict[str, Any]) -> list[str]:
    """2. MFU per position encoding and attention variant."""
    headers = ["pos / attention", "tok/s", "MFLOP/token", "GFLOP/s", "MFU"]
    headers += ["tok per CPU-s", "MFU per CPU-s"]
    rows = [
        [
            r["variant"],
            r["tokens_per_s"],
            r["flops_per_token"] / 1e6,
            r["gflops"],
            pct(r["mfu"]),
            r["tokens_per_cpu_s"],
            pct(r["mfu_cpu"]),
        ]
        for r in rec["mfu"]
    ]
    return [
        "### 2. MFU per position encoding and attention variant (plain loop, model preset "
        f"`{rec['options']['mfu_model']}`, same data and batch; target >= 40 %)",
        "",
        table(headers, rows),
        "",
    ]


def reanalysis_rows(cost: dict[str, Any]) -> list[list[str]]:
    """Cost per checkpoint and memory; the growth row only where two checkpoints or more give
    a slope and two halves."""
    per = cost["per_checkpoint_s"]
    rows = [
        [
            f"reanalysis per checkpoint (load + measure, {cost['count']} in a row)",
            f"{per.median:.3f} s (min {per.min:.3f}, max {per.max:.3f})",
        ]
    ]
    if cost["count"] >= 2:
        slope, late = cost["slope_s_per_checkpoint"], cost["late_over_early"]
        rows.append(
            [
                "growth: slope of cumulative time; late-half / early-half cost",
                f"{slope:.3f} s per checkpoint; {late:.2f}",
            ]
        )
    first, last = cost["rss_mb"][0], cost["rss_mb"][-1]
    rss = f"{first:.0f} MB -> {last:.0f} MB ({cost['rss_growth_mb']:+.1f} MB)"
    rows.append(["RSS after first -> last checkpoint", rss])
    return rows


def costs_section(costs: dict[str, Any], generator: float) -> list[str]:
    """3. Probe pass, the probes' share of a default run, reanalysis, the data generator."""
    proj = costs["projection"]
    windows, window_len = costs["probe_windows"]
    rows = [
        [
            f"one probe pass ({windows} windows x {window_len})",
            f"{costs['probe_pass_s'].median:.3f} s = "
            f"{costs['probe_pass_in_steps']:.2f} training steps",
        ],
        ["one probe inside a run (measure + parquet + log)", f"{costs['probe_in_run_s']:.3f} s"],
    ]
    if costs.get("probe_pass_no_outliers_s"):
        rows.append(
            [
                "outlier metrics (a probe pass with them against one without)",
                f"+{costs['outliers_in_probes']:.2f} probe passes "
                f"({costs['probe_pass_no_outliers_s'].median:.3f} s without them; "
                "target <= 1)",
            ]
        )
    if costs.get("stream_eval_s"):
        rows.append(
            [
                f"one streaming evaluation ({costs['stream_setup']})",
                f"{costs['stream_eval_s'].median:.3f} s = "
                f"{costs['stream_in_probes']:.2f} probe passes",
            ]
        )
    if costs.get("quant_eval_s"):
        rows.append(
            [
                f"one W8A8 evaluation ({costs['quant_setup']})",
                f"{costs['quant_eval_s'].median:.3f} s = "
                f"{costs['quant_in_probes']:.2f} probe passes (target <= 10 s)",
            ]
        )
    rows += [
        [
            f"probes' share of a default run ({proj.steps} steps, {proj.n_probes} probes, "
            f"{proj.n_checkpoints} checkpoints, {proj.n_validations} validations)",
            f"{pct(costs['probe_share'], 2)} of {proj.total_s:.0f} s (target <= 3 %)",
        ],
    ]
    if costs.get("reanalysis"):
        rows += reanalysis_rows(costs["reanalysis"])
    rows.append(
        ["Bigram-Backcopy generator, one core", f"{generator:,.0f} tokens/s (target >= 1M)"]
    )
    return ["### 3. Probe and reanalysis cost", "", table(["figure", "value"], rows), ""]


def kernels_section(rec: dict[str, Any]) -> list[str]:
    """4. Which SDPA ops each variant ran."""
    rows = [
        [k["variant"], ", ".join(k["sdpa_ops"]) or "-", k["flash"], fmt(k["forced_flash_ok"])]
        for k in rec["kernels"]
    ]
    headers = ["variant", "SDPA ops that ran (forward)", "flash", "forced flash backend"]
    return [f"### 4. Attention kernels ({rec['machine']['device']})", "", table(headers, rows), ""]


def profile_section(rec: dict[str, Any]) -> list[str]:
    """5. Where a step's time goes (CPU runs only; nothing when there is no profile)."""
    prof = rec.get("profile")
    if not prof:
        return []
    return [
        f"### 5. Where a `{rec['options']['mfu_model']}` rope/softmax step's time goes "
        "(torch.profiler, self CPU time)",
        "",
        table(["bucket", "share"], [[k, pct(v)] for k, v in prof["shares"].items()]),
        "",
        f"The matmul bucket alone runs at {prof['matmul_gflops']:.0f} GFLOP/s "
        "(6N FLOPs per token over its time).",
        "",
    ]


def encoder_section(rec: dict[str, Any]) -> list[str]:
    """The encoder's tokens/s against the decoder's (issue 17); absent in older records."""
    enc = rec.get("encoder")
    if not enc:
        return []
    rows = [[name, fmt(enc[name].median), pct(enc[name].spread)] for name in ("decoder", "encoder")]
    rows.append(["encoder / decoder", fmt(enc["ratio"].median), pct(enc["ratio"].spread)])
    return [
        "### Encoder against decoder (plain loop, same model and batches, alternated repeats; "
        "target ratio >= 0.9)",
        "",
        table(["model", "tok/s (median)", "spread"], rows),
        "",
    ]


def render(rec: dict[str, Any]) -> str:
    """The whole markdown report of one benchmark record."""
    lines = [
        *header(rec),
        *throughput_section(rec),
        *mfu_section(rec),
        *costs_section(rec["costs"], rec["generator"]),
        *kernels_section(rec),
        *encoder_section(rec),
        *profile_section(rec),
        f"Command: `{rec['command']}` ({rec['seconds']:.0f} s)",
    ]
    return "\n".join(lines)
