"""Memory and speed of long-stream evaluation: the rolling KV cache against the masked pass.

    python -m sinklab.bench.stream_memory --model smollm2 --tokens 20000 --cache 256,1024

Each measurement runs in its own child process, which loads the model, resets the kernel's
peak-RSS counter (`/proc/self/clear_refs`, so the load's own peak does not count) and then
streams: the peak RSS printed is the model plus everything the streaming path held. The
rolling path (`sinklab.model.rolling_cache`) runs over the whole stream for every cache
size x sink count; the one-pass masked plan (`sinklab.model.streaming`), whose memory grows
with T, over the first `--masked-tokens` only (0: never), with the rolling path on the same
tokens beside it and their largest NLL difference.

`--out PREFIX` also writes PREFIX.csv (perplexity per `--every` query positions, per
condition, of the first cache size) and PREFIX.png (that curve). The stream is the start of
the Shakespeare corpus cut with the model's tokenizer (`--model tiny`: a random 2-layer
model on random ids, a smoke run of a few seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from sinklab.reanalysis.memory import release_memory

MODELS = ("smollm2", "gemma3", "tiny")


@dataclass(frozen=True)
class Job:
    """One measurement: a path over a stream of `tokens` tokens under one cache condition."""

    model: str
    tokens: int
    cache: int
    sinks: int
    shift: bool
    path: str  # rolling | masked
    chunk: int
    threads: int
    nll_file: str = ""  # where the child saves its NLL [tokens - 1] (float32 .npy)

    @property
    def condition(self) -> str:
        name = "window" if self.sinks == 0 else f"sinks{self.sinks}"
        return name + ("_shift" if self.shift else "")


@dataclass(frozen=True)
class Result:
    job: Job
    seconds: float
    rss_loaded_mb: float  # after loading the model and the stream
    peak_rss_mb: float  # the peak while streaming (model included)
    ppl_after_fill: float  # over query positions t >= C

    @property
    def tokens_per_s(self) -> float:
        return self.job.tokens / self.seconds


# -- the child ----------------------------------------------------------------------------------


def status_kb(field: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return float(line.split()[1])
    return float("nan")


def reset_peak() -> None:
    """Start the kernel's peak-RSS counter (VmHWM) afresh at the current RSS."""
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")


def load(model: str, tokens: int) -> tuple[torch.nn.Module, torch.Tensor]:
    """(model in eval mode, stream ids [tokens])."""
    if model == "tiny":
        from sinklab.model import ModelConfig, build_model

        torch.manual_seed(0)
        cfg = ModelConfig(vocab_size=256, d_model=64, n_layers=2, n_heads=4, max_seq_len=128)
        return build_model(cfg).eval(), torch.randint(0, 256, (tokens,))
    from sinklab.model import pretrained
    from sinklab.reanalysis.corpus_probe import build_stream, corpus_documents

    loaded, tokenizer = getattr(pretrained, f"load_{model}")()
    return loaded.eval(), build_stream(tokenizer, corpus_documents("shakespeare"), tokens)


def _nll_in_slices(model: Any, hidden: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """NLL [T-1] from hidden states [T, d], 512 rows of logits at a time."""
    out = []
    for i in range(0, len(ids) - 1, 512):
        h = hidden[i : min(i + 512, len(ids) - 1)]
        logits = model.head(h).float()
        out.append(F.cross_entropy(logits, ids[i + 1 : i + 1 + len(h)], reduction="none"))
    return torch.cat(out)


@torch.no_grad()
def run_job(job: Job) -> Result:
    """Measure one job in this process (the child's work)."""
    from sinklab.model.rolling_cache import stream_token_nll
    from sinklab.model.streaming import StreamPlan

    torch.set_num_threads(job.threads)
    model, ids = load(job.model, job.tokens)
    release_memory()
    rss_loaded = status_kb("VmRSS") / 1024
    reset_peak()
    start = time.perf_counter()
    if job.path == "rolling":
        nll = stream_token_nll(model, ids, job.cache, job.sinks, job.shift, job.chunk)
    else:
        S = model.cfg.n_sink_tokens
        plan = StreamPlan(len(ids), job.cache, job.sinks, job.shift, n_prefix=S)
        hidden = model.forward_stream(ids[None], plan, hidden=True)[0]
        nll = _nll_in_slices(model, hidden, ids)
    seconds = time.perf_counter() - start
    peak = status_kb("VmHWM") / 1024
    if job.nll_file:
        np.save(job.nll_file, nll.numpy().astype(np.float32))
    ppl = math.exp(float(nll[job.cache :].double().mean()))
    return Result(job, seconds, rss_loaded, peak, ppl)


def _child(spec: str) -> None:
    result = run_job(Job(**json.loads(spec)))
    print(json.dumps({**asdict(result), "job": asdict(result.job)}))


def in_child(job: Job) -> Result:
    """`run_job` in a fresh process, so each peak RSS is that job's alone."""
    env = {**os.environ, "OMP_NUM_THREADS": str(job.threads)}
    cmd = [sys.executable, "-m", "sinklab.bench.stream_memory", "--child", json.dumps(asdict(job))]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{job.path} {job.condition} C={job.cache} failed:\n{done.stderr}")
    values = json.loads(done.stdout.strip().splitlines()[-1])
    return Result(**{**values, "job": Job(**values["job"])})


# -- the report ---------------------------------------------------------------------------------


def curve(nll: np.ndarray, every: int) -> list[tuple[int, int, float]]:
    """(first, last + 1, perplexity) of each run of `every` query positions."""
    out = []
    for start in range(0, len(nll), every):
        part = nll[start : start + every].astype(np.float64)
        out.append((start, start + len(part), math.exp(part.mean())))
    return out


def write_curve(prefix: Path, curves: dict[str, np.ndarray], every: int, title: str) -> None:
    """PREFIX.csv (position_start, position_end, condition, ppl) and PREFIX.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prefix.parent.mkdir(parents=True, exist_ok=True)
    lines = ["position_start,position_end,condition,ppl"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, nll in curves.items():
        points = curve(nll, every)
        lines += [f"{a},{b},{name},{p:.4f}" for a, b, p in points]
        ax.plot([(a + b) / 2 for a, b, _ in points], [p for *_, p in points], "o-", label=name)
    prefix.with_suffix(".csv").write_text("\n".join(lines) + "\n")
    ax.set_yscale("log")
    ax.set_xlabel("query position t")
    ax.set_ylabel(f"perplexity (mean over {every} positions)")
    ax.set_title(title)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(prefix.with_suffix(".png"), dpi=120)
    plt.close(fig)


def table(results: list[Result]) -> str:
    head = (
        f"{'path':8} {'condition':14} {'C':>5} {'T':>6} {'chunk':>5} {'tokens/s':>9} "
        f"{'peak RSS MB':>11} {'loaded MB':>9} {'ppl t>=C':>9}"
    )
    rows = [head, "-" * len(head)]
    for r in results:
        j = r.job
        rows.append(
            f"{j.path:8} {j.condition:14} {j.cache:>5} {j.tokens:>6} {j.chunk:>5} "
            f"{r.tokens_per_s:>9.1f} {r.peak_rss_mb:>11.0f} {r.rss_loaded_mb:>9.0f} "
            f"{r.ppl_after_fill:>9.3f}"
        )
    return "\n".join(rows)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sinklab.bench.stream_memory",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", choices=MODELS, default="smollm2")
    p.add_argument("--tokens", type=int, default=20000, help="stream length T")
    p.add_argument(
        "--cache", type=_ints, default=[256, 1024], help="cache sizes C, comma-separated"
    )
    p.add_argument("--sinks", type=_ints, default=[0, 1, 4], help="sink counts k (0: window)")
    p.add_argument("--no-shift", action="store_true", help="keep stream positions (no shift)")
    p.add_argument("--chunk", type=int, default=128, help="rolling path: tokens per chunk")
    p.add_argument("--threads", type=int, default=1, help="torch threads per child")
    p.add_argument(
        "--masked-tokens",
        type=int,
        default=0,
        help="also time the masked pass on the first N tokens (largest k, each C); 0: never",
    )
    p.add_argument("--every", type=int, default=1000, help="curve: positions per point")
    p.add_argument("--out", type=Path, default=None, help="write OUT.csv and OUT.png")
    p.add_argument("--json", type=Path, default=None, help="write every result as JSON")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.child is not None:
        _child(args.child)
        return
    shift = not args.no_shift
    results: list[Result] = []
    curves: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for cache in args.cache:
            for sinks in args.sinks:
                nll_file = str(Path(tmp) / f"nll_{cache}_{sinks}.npy")
                job = Job(
                    args.model, args.tokens, cache, sinks, shift, "rolling", args.chunk,
                    args.threads, nll_file,
                )  # fmt: skip
                results.append(in_child(job))
                print(table(results[-1:]).splitlines()[-1], flush=True)
                if cache == args.cache[0]:
                    curves[job.condition] = np.load(nll_file)
            if args.masked_tokens:
                n = min(args.masked_tokens, args.tokens)
                pair = []
                for path in ("masked", "rolling"):
                    nll_file = str(Path(tmp) / f"{path}_{cache}.npy")
                    job = Job(
                        args.model, n, cache, max(args.sinks), shift, path, args.chunk,
                        args.threads, nll_file,
                    )  # fmt: skip
                    results.append(in_child(job))
                    pair.append(np.load(nll_file))
                    print(table(results[-1:]).splitlines()[-1], flush=True)
                diff = float(np.abs(pair[0] - pair[1]).max())
                print(f"C={cache}, first {n} tokens: max |NLL masked - rolling| = {diff:.2e}")
    print()
    print(table(results))
    if args.out is not None:
        title = f"{args.model}: rolling cache C={args.cache[0]}" + (", shift" if shift else "")
        write_curve(args.out, curves, args.every, title)
        print(f"wrote {args.out.with_suffix('.csv')} and {args.out.with_suffix('.png')}")
    if args.json is not None:
        args.json.write_text(
            json.dumps([{**asdict(r), "tokens_per_s": r.tokens_per_s} for r in results], indent=1)
        )


if __name__ == "__main__":
    main()
