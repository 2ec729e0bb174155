"""Documents streamed from a source in units of work, never the whole corpus in memory.

`storage=shards` splits a source into units (one local file, or one shard of a hub dataset)
that worker processes read independently through `datasets`' streaming readers (txt, jsonl,
parquet, csv, any hub dataset). The cache key is built from `source_identity`, which looks at
names, sizes and modification times only: it never reads the text.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sinklab.data.config import DataConfig
from sinklab.data.sources import _BUILDERS, _expand
from sinklab.errors import ConfigError

BATCH_DOCS = 1000  # documents per read and per encode_batch call: bounds a worker's memory


@dataclass(frozen=True)
class Unit:
    """One worker's share: a local file, or shard `shard` of `n_shards` of a hub dataset."""

    index: int
    path: str | None = None
    shard: int = 0
    n_shards: int = 1


def plan_units(cfg: DataConfig) -> list[Unit]:
    """The source's units in source order (hub datasets: resolves the dataset's files)."""
    if cfg.source == "text_files":
        return [Unit(i, path=str(p)) for i, p in enumerate(_files(cfg))]
    hf = cfg.hf_dataset
    if hf.max_documents is not None:  # a capped read is one ordered stream
        return [Unit(0)]
    n = int(getattr(_hf_stream(cfg), "num_shards", 1) or 1)
    return [Unit(i, shard=i, n_shards=n) for i in range(n)]


def source_identity(cfg: DataConfig) -> dict[str, Any]:
    """What names the corpus for the cache key: paths, sizes and mtimes (local files) or the
    dataset's name, config, split, revision and data files. Reads no text."""
    if cfg.source == "text_files":
        tf = cfg.text_files
        files = []
        for path in _files(cfg):
            try:
                st = path.stat()
            except OSError as err:
                raise ConfigError("data.text_files.paths", f"cannot read {path}: {err}") from err
            files.append([str(path.resolve()), st.st_size, st.st_mtime_ns])
        return {"files": files, "text_field": tf.text_field, "sample_by": tf.sample_by}
    hf = cfg.hf_dataset
    identity: dict[str, Any] = {
        "name": hf.name,
        "config": hf.config,
        "split": hf.split,
        "revision": hf.revision,
        "data_files": hf.data_files,
        "text_field": hf.text_field,
        "max_documents": hf.max_documents,
    }
    local = _local_data_files(hf.data_files)
    if local:
        identity["files"] = [[str(p), p.stat().st_size, p.stat().st_mtime_ns] for p in local]
    return identity


def iter_batches(cfg: DataConfig, unit: Unit, limit: int | None = None) -> Iterator[list[str]]:
    """The unit's documents in batches of BATCH_DOCS (at most `limit` in all); empty ones
    dropped, a row without the text field refused in one line naming the file."""
    if cfg.source == "text_files":
        assert unit.path is not None
        rows, field, where = _file_stream(cfg, Path(unit.path)), _field(cfg, unit), unit.path
        key = "data.text_files.text_field"
    else:
        stream = _hf_stream(cfg)
        if unit.n_shards > 1:
            stream = stream.shard(num_shards=unit.n_shards, index=unit.shard)
        rows, field, where = stream.iter(batch_size=BATCH_DOCS), cfg.hf_dataset.text_field, None
        where = f"{cfg.hf_dataset.name} (shard {unit.shard})"
        key = "data.hf_dataset.text_field"
    if cfg.source == "hf_dataset" and limit is None:
        limit = cfg.hf_dataset.max_documents
    seen = 0
    try:
        for row_number, batch in _numbered(rows):
            if field not in batch:
                raise ConfigError(
                    key, f"{field!r} is missing from {where}; columns: {', '.join(batch)}"
                )
            docs = []
            for k, text in enumerate(batch[field]):
                if text is None:
                    raise ConfigError(
                        key, f"{field!r} is missing from row {row_number + k + 1} of {where}"
                    )
                if text.strip():
                    docs.append(str(text))
            if limit is not None and seen + len(docs) >= limit:
                yield docs[: limit - seen]
                return
            seen += len(docs)
            if docs:
                yield docs
    except ConfigError:
        raise
    except (OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(_paths_key(cfg), f"cannot read {where}: {first}") from err


def sample(cfg: DataConfig, skip: int, count: int | None) -> list[str]:
    """`count` documents in source order after the first unit's first `skip` (the validation
    documents): the BPE's bounded training sample."""
    out: list[str] = []
    for unit in plan_units(cfg):
        batches = iter_batches(cfg, unit)
        for docs in skipping(batches, skip) if unit.index == 0 else batches:
            out.extend(docs)
            if count is not None and len(out) >= count:
                return out[:count]
    return out


def skipping(batches: Iterator[list[str]], skip: int) -> Iterator[list[str]]:
    """The batches without their first `skip` documents."""
    for docs in batches:
        if skip >= len(docs):
            skip -= len(docs)
            continue
        yield docs[skip:]
        skip = 0


def _numbered(rows: Any) -> Iterator[tuple[int, dict[str, list[Any]]]]:
    first = 0
    for batch in rows:
        yield first, batch
        first += len(next(iter(batch.values()), []))


def _files(cfg: DataConfig) -> list[Path]:
    files = _expand(cfg.text_files.paths)
    for path in files:
        if path.suffix.lower() not in _BUILDERS:
            raise ConfigError(
                "data.text_files.paths",
                f"{path.name}: unsupported file type; use one of {', '.join(sorted(_BUILDERS))}",
            )
        if not os.access(path, os.R_OK):
            raise ConfigError("data.text_files.paths", f"cannot read {path}: permission denied")
    if not files:
        raise ConfigError("data.text_files.paths", "no file matches")
    return files


def _field(cfg: DataConfig, unit: Unit) -> str:
    assert unit.path is not None
    return (
        "text" if _BUILDERS[Path(unit.path).suffix.lower()] == "text" else cfg.text_files.text_field
    )


def _file_stream(cfg: DataConfig, path: Path) -> Iterator[dict[str, list[Any]]]:
    from datasets import load_dataset

    builder = _BUILDERS[path.suffix.lower()]
    kwargs = {"sample_by": cfg.text_files.sample_by} if builder == "text" else {}
    try:
        stream = load_dataset(
            builder, data_files=[str(path)], split="train", streaming=True, **kwargs
        )
    except (OSError, ValueError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError("data.text_files.paths", f"cannot read {path}: {first}") from err
    return stream.iter(batch_size=BATCH_DOCS)


def _hf_stream(cfg: DataConfig) -> Any:
    """The configured hub (or local builder) dataset as a `datasets.IterableDataset`."""
    from datasets import load_dataset

    hf = cfg.hf_dataset
    kwargs: dict[str, Any] = {"data_files": hf.data_files} if hf.data_files else {}
    if hf.revision:
        kwargs["revision"] = hf.revision
    try:
        return load_dataset(hf.name, hf.config, split=hf.split, streaming=True, **kwargs)
    except (FileNotFoundError, ValueError, ConnectionError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError("data.hf_dataset.name", f"could not load {hf.name!r}: {first}") from err


def _local_data_files(data_files: Any) -> list[Path]:
    if not data_files:
        return []
    if isinstance(data_files, dict):
        data_files = [f for v in data_files.values() for f in ([v] if isinstance(v, str) else v)]
    patterns = [data_files] if isinstance(data_files, str) else list(data_files)
    found: list[Path] = []
    for pattern in patterns:
        if isinstance(pattern, str) and Path(pattern).expanduser().parent.is_dir():
            import glob

            found.extend(Path(p) for p in sorted(glob.glob(str(Path(pattern).expanduser()))))
    return found


def _paths_key(cfg: DataConfig) -> str:
    return "data.text_files.paths" if cfg.source == "text_files" else "data.hf_dataset.name"
