"""`python -m sinklab.data.prepare`: build a corpus, tokenizer and token cache ahead of training.

`make data` runs it with the default (Shakespeare, BPE 4096); pass `--data NAME` for another
conf/data option (composed through Hydra, so it inherits from base.yaml like training does),
or `--config FILE` for a plain YAML of data keys, and `key=value` overrides (dotted for nested
keys, e.g. tokenizer.kind=byte).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from sinklab.configs import compose_section
from sinklab.data import shards
from sinklab.data.config import DataConfig
from sinklab.errors import ConfigError


def _apply(raw: dict[str, Any], override: str) -> None:
    key, sep, value = override.partition("=")
    if not sep:
        raise ConfigError("data", f"override {override!r} must look like key=value")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = yaml.safe_load(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--data", help="a conf/data option, e.g. text_files (default: built-in defaults)"
    )
    source.add_argument("--config", type=Path, help="a plain YAML file of data keys")
    parser.add_argument(
        "--cache-dir", type=Path, help="cache folder (default: $SINKLAB_CACHE or ~/.cache/sinklab)"
    )
    parser.add_argument(
        "--verify",
        action="store_true",
        help="storage=shards: check every shard's CRC-32 (a pass over the data); a damaged "
        "shard is prepared again",
    )
    parser.add_argument("overrides", nargs="*", help="key=value settings")
    args = parser.parse_args(argv)
    try:
        return _prepare(args)
    finally:
        shards.stop_workers()


def _prepare(args: argparse.Namespace) -> int:
    try:
        raw: dict[str, Any] = {}
        if args.data:
            raw = compose_section("data", args.data)
        elif args.config:
            raw = yaml.safe_load(args.config.read_text()) or {}
        for override in args.overrides:
            _apply(raw, override)
        if args.cache_dir:
            raw["cache_dir"] = str(args.cache_dir.expanduser().resolve())
        cfg = DataConfig.from_dict(raw)
        if cfg.storage == "shards":  # their start overlaps the imports and the validation split
            shards.start_workers(cfg)
        # here, not at the top: storage=shards workers import this module again (spawn) and
        # must not import torch with it
        from sinklab.data.run_data import RunData

        start = time.perf_counter()
        dm = RunData(cfg)
        dm.build()
        if args.verify and cfg.storage == "shards":
            damaged = shards.verify(dm.batches.shards.folder)
            for path in damaged:
                print(f"damaged     {path} (prepared again now)")
            if damaged:
                dm = RunData(cfg)
                dm.build()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    took = time.perf_counter() - start
    print(f"source      {cfg.source}")
    print(f"cache       {cfg.cache_root()}")
    print(f"vocab size  {dm.vocab_size} (bos {dm.bos_id}, eos {dm.eos_id}, pad {dm.pad_id})")
    if cfg.source != "synthetic":
        batches = dm.batches
        print(f"tokenizer   {cfg.tokenizer.kind}")
        if cfg.storage == "shards":
            sset = batches.shards
            where = f"{len(sset.files)} shards in {sset.folder}"
            print(f"train       {sset.n_tokens:,} tokens   {where}")
        else:
            print(
                f"train       {len(batches._stream('train')):,} tokens   {batches.files['train']}"
            )
        print(f"validation  {len(batches._stream('val')):,} tokens   {batches.files['val']}")
        print(f"cache hit   {dm.cache_hit}")
    else:
        print(f"synthetic   {cfg.synthetic.kind}")
    print(f"ready in    {took:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
