"""A corpus of any size from the offline Shakespeare text, as distinct jsonl documents.

The benchmark and the shard tests need gigabytes of local text that looks like real prose
and never repeats a document (a repeated document would hide a loader that reads a token
twice). Each document is a seeded run of consecutive paragraphs from a random play, headed
by its number, so no two documents are equal and the token statistics stay Shakespeare's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sinklab.atomic import atomic_write


def paragraphs(plays: list[str]) -> list[str]:
    """The non-empty paragraphs of the plays, in order."""
    out: list[str] = []
    for text in plays:
        out.extend(p.strip() for p in text.split("\n\n") if p.strip())
    return out


def documents(paras: list[str], seed: int, block: int, count: int = 64) -> list[str]:
    """The `count` documents of block `block`: a pure function of (seed, block)."""
    gen = np.random.default_rng([seed, block])
    n = len(paras)
    starts = gen.integers(0, n, count)
    lengths = gen.integers(3, 40, count)
    docs = []
    for i, (start, length) in enumerate(zip(starts.tolist(), lengths.tolist(), strict=True)):
        body = "\n\n".join(paras[(start + j) % n] for j in range(length))
        docs.append(f"Document {block * count + i}.\n\n{body}")
    return docs


def write_corpus(
    out_dir: Path, plays: list[str], total_mb: float, file_mb: float = 64.0, seed: int = 0
) -> list[Path]:
    """jsonl files `part-00000.jsonl` ... holding about `total_mb` MB of text in
    `{"text": ...}` rows; each file is written atomically (a killed run leaves whole files)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paras = paragraphs(plays)
    total, per_file = int(total_mb * 1e6), int(file_mb * 1e6)
    written, block, files = 0, 0, []
    while written < total:
        lines, size = [], 0
        while size < min(per_file, total - written):
            for doc in documents(paras, seed, block):
                line = json.dumps({"text": doc}, ensure_ascii=False) + "\n"
                lines.append(line)
                size += len(line.encode("utf-8"))
            block += 1
        path = out_dir / f"part-{len(files):05d}.jsonl"
        data = "".join(lines).encode("utf-8")
        atomic_write(path, lambda fh, data=data: fh.write(data))
        files.append(path)
        written += size
    return files
