"""Token shards for corpora of billions of tokens (`data.storage=shards`): flat memory, every
core, resumable, and a cache key that never reads the text.

Preparation. The source is split into units (documents.py); a pool of worker processes
streams each unit's documents through `datasets`, tokenizes them in batches and appends
`doc EOS doc EOS ...` to `train-NNNNN.bin` (raw uint16/uint32, nanoGPT's format). A unit's
shard is written under a temporary name and renamed when whole, then its `.json` (token count,
CRC-32) is written: a shard without its json is unfinished and is redone, so an interrupted
preparation resumes at the first unfinished unit and never reuses half a shard. `manifest.json`
last marks the whole set as complete. Memory holds one batch of documents per worker.

Validation. The first `shards.val_documents` documents of the source are the validation
split, written as the small `val.npy` the in-memory path uses; the first unit's worker skips
them, so they are never in a training shard, and finding them costs no pass over the corpus.

Reading. `ShardSet` memory-maps the shards and cuts them into non-overlapping blocks of one
window each; `sampling.BlockSampler` orders the blocks (a seeded permutation per epoch), so
the batch at a step stays a pure function of seed and step.
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import json
import logging
import multiprocessing as mp
import os
import pickle
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sinklab.atomic import atomic_write, commit
from sinklab.data import documents
from sinklab.data.config import DataConfig
from sinklab.data.tokenizer import Tokenizer
from sinklab.errors import ConfigError

log = logging.getLogger(__name__)

FORMAT = "sinklab-shards-v1"


def dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= np.iinfo(np.uint16).max + 1 else np.uint32)


def workers_for(cfg: DataConfig) -> int:
    return cfg.shards.workers or os.cpu_count() or 1


def shard_key(cfg: DataConfig, tokenizer: Tokenizer) -> str:
    """Source identity + tokenizer fingerprint + preparation settings (no text is read)."""
    settings = {
        "format": FORMAT,
        "source": cfg.source,
        "identity": documents.source_identity(cfg),
        "tokenizer": tokenizer.fingerprint(),
        "val_documents": cfg.shards.val_documents,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


def shard_folder(cfg: DataConfig, tokenizer: Tokenizer) -> Path:
    return cfg.cache_root() / "shards" / shard_key(cfg, tokenizer)


# --- preparation --------------------------------------------------------------------------
@dataclass
class PrepareReport:
    folder: Path
    hit: bool
    units_done: int  # units prepared in this call (0 on a hit)
    seconds: float


def prepare(cfg: DataConfig, tokenizer: Tokenizer, progress: bool = True) -> PrepareReport:
    """Build (or resume building) the shards of `cfg`'s corpus; a complete set is reused."""
    started = time.perf_counter()
    folder = shard_folder(cfg, tokenizer)
    if ShardSet.complete(folder):
        stop_workers()
        return PrepareReport(folder, True, 0, time.perf_counter() - started)
    folder.mkdir(parents=True, exist_ok=True)
    units = documents.plan_units(cfg)
    n_val = _write_val(cfg, tokenizer, folder, units[0])
    pending = [u for u in units if not _unit_done(folder, u.index)]
    jobs = [(u, n_val if u.index == 0 else 0) for u in pending]
    _run_jobs(cfg, tokenizer, folder, jobs, progress)
    metas = [_read_json(folder / f"train-{u.index:05d}.json") for u in units]
    manifest = {
        "format": FORMAT,
        "dtype": dtype_for(tokenizer.vocab_size).name,
        "vocab_size": tokenizer.vocab_size,
        "shards": [
            [f"train-{u.index:05d}.bin", m["n_tokens"]] for u, m in zip(units, metas, strict=True)
        ],
        "n_docs": sum(m["n_docs"] for m in metas),
    }
    _write_text(folder / "manifest.json", json.dumps(manifest))
    return PrepareReport(folder, False, len(pending), time.perf_counter() - started)


def verify(folder: Path) -> list[str]:
    """Full check of every shard against its CRC-32 (a pass over the data: `prepare --verify`).
    A damaged shard's json is removed, so the next preparation rebuilds that unit only."""
    bad = []
    for meta_path in sorted(folder.glob("train-*.json")):
        meta = _read_json(meta_path)
        shard = meta_path.with_suffix(".bin")
        if not shard.is_file() or _crc(shard) != meta["crc32"]:
            bad.append(str(shard))
            meta_path.unlink()
            (folder / "manifest.json").unlink(missing_ok=True)
    return bad


def _write_val(cfg: DataConfig, tokenizer: Tokenizer, folder: Path, first: documents.Unit) -> int:
    """The validation split: the source's first val_documents documents, as val.npy."""
    meta_path = folder / "val.json"
    if meta_path.is_file():
        return int(_read_json(meta_path)["n_docs"])
    docs = [
        d
        for batch in documents.iter_batches(cfg, first, limit=cfg.shards.val_documents)
        for d in batch
    ]
    pieces = tokenizer.encode_docs(docs)
    stream = _pack(pieces, tokenizer.eos_id, dtype_for(tokenizer.vocab_size))
    lengths = np.array([len(p) + 1 for p in pieces], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    _save_npy(folder / "val_docs.npy", starts)
    _save_npy(folder / "val.npy", stream)
    _write_text(meta_path, json.dumps({"n_docs": len(docs), "n_tokens": int(len(stream))}))
    return len(docs)


def _pack(pieces: list[np.ndarray], eos: int | None, dtype: np.dtype) -> np.ndarray:
    """`doc EOS doc EOS ...` of the encoded documents."""
    if not pieces:
        return np.empty(0, dtype=dtype)
    lengths = np.array([len(p) for p in pieces], dtype=np.int64)
    flat = np.concatenate(pieces) if len(pieces) > 1 else pieces[0]
    return np.insert(flat, np.cumsum(lengths), eos).astype(dtype)


# Worker state: the counters from the pool initializer; cfg, tokenizer and folder from the
# first job's context (a pool can start before they are known: see start_workers).
_STATE: dict[str, Any] = {}
Job = tuple[documents.Unit, int, bytes]  # (unit, documents to skip, pickled context)


def _init_worker(counters: Any) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process per core already
    _STATE.update(counters=counters, context=None)
    import datasets  # noqa: F401  (now, while the main process starts: not at the first job)


def _use_context(context: bytes) -> None:
    """Unpickle (cfg, tokenizer, folder) once per worker and preparation, not once per job."""
    if _STATE.get("context") != context:
        cfg, tokenizer, folder = pickle.loads(context)
        _STATE.update(cfg=cfg, tokenizer=tokenizer, folder=folder, context=context)


def _prepare_unit(job: Job) -> int:
    """Tokenize one unit into `train-NNNNN.bin` (atomically), then write its json."""
    unit, skip, context = job
    _use_context(context)
    cfg: DataConfig = _STATE["cfg"]
    tokenizer: Tokenizer = _STATE["tokenizer"]
    folder: Path = _STATE["folder"]
    counters = _STATE["counters"]
    dtype = dtype_for(tokenizer.vocab_size)
    shard = folder / f"train-{unit.index:05d}.bin"
    tmp = shard.with_name(
        f".{shard.name}.{os.getpid()}.tmp"
    )  # ranks preparing at once never share one
    n_tokens = n_docs = 0
    crc = 0
    try:
        with open(tmp, "wb") as fh:
            for docs in documents.skipping(documents.iter_batches(cfg, unit), skip):
                packed = _pack(tokenizer.encode_docs(docs), tokenizer.eos_id, dtype)
                data = packed.tobytes()
                fh.write(data)
                crc = zlib.crc32(data, crc)
                n_tokens += len(packed)
                n_docs += len(docs)
                if counters is not None:  # this worker's own two slots: no lock needed
                    slot = 2 * (_worker_number() % (len(counters) // 2))
                    counters[slot] += len(docs)
                    counters[slot + 1] += len(packed)
        commit(tmp, shard)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno == errno.ENOSPC:
            raise ConfigError(
                "data.cache_dir",
                f"disk full while writing {shard}; the finished shards are kept: free space "
                "and run the preparation again to resume",
            ) from err
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    meta = {"n_tokens": n_tokens, "n_docs": n_docs, "crc32": crc, "dtype": dtype.name}
    _write_text(shard.with_suffix(".json"), json.dumps(meta))
    return n_tokens


def _worker_number() -> int:
    """1, 2, ... in pool workers; 0 in the main process."""
    identity = mp.current_process()._identity
    return identity[0] if identity else 0


def _pool_unit(job: Job) -> tuple[Any, ...]:
    """`_prepare_unit` in a pool worker: a ConfigError comes back as data (it does not pickle)."""
    try:
        return ("ok", _prepare_unit(job))
    except ConfigError as err:
        return ("error", err.key, str(err)[len(err.key) + 2 :])


def _run_jobs(
    cfg: DataConfig,
    tokenizer: Tokenizer,
    folder: Path,
    jobs: list[tuple[documents.Unit, int]],
    progress: bool,
) -> None:
    """Run the units on min(workers, units) processes (in this process for one), with a
    progress bar of documents, tokens and tokens/s."""
    if not jobs:
        stop_workers()
        return
    n_proc = min(workers_for(cfg), len(jobs))
    early = _EARLY.pop(workers_for(cfg), None) if n_proc > 1 else None
    stop_workers()  # a pool started for another worker count (or not needed) goes now
    pool, counters = early or (_new_pool(n_proc) if n_proc > 1 else (None, _counters(1)))
    context = pickle.dumps((cfg, tokenizer, folder))
    stop = threading.Event()
    bar = threading.Thread(target=_progress, args=(counters, stop, len(jobs)), daemon=True)
    if progress:
        bar.start()
    try:
        if pool is None:
            _init_worker(counters)
            for unit, skip in jobs:
                _prepare_unit((unit, skip, context))
        else:
            with pool:
                for outcome in pool.imap_unordered(_pool_unit, [(u, k, context) for u, k in jobs]):
                    if outcome[0] == "error":  # a ConfigError, carried across the pipe
                        raise ConfigError(outcome[1], outcome[2])
    finally:
        stop.set()
        if progress:
            bar.join()


# Pools started ahead by start_workers, by worker count; the next preparation takes its own.
_EARLY: dict[int, tuple[Any, Any]] = {}


def start_workers(cfg: DataConfig) -> None:
    """Start `cfg`'s preparation workers now. A spawned worker starts an interpreter and
    imports `datasets` (seconds on a busy machine); started before the caller's own imports,
    the tokenizer and the validation split, that time overlaps them instead of following
    them. The next `prepare` with as many workers uses the pool; `stop_workers` ends an
    unused one (a cache hit)."""
    n = workers_for(cfg)
    if n > 1 and n not in _EARLY:
        _EARLY[n] = _new_pool(n)


def stop_workers() -> None:
    """End the pools started ahead and not used."""
    while _EARLY:
        pool, _ = _EARLY.popitem()[1]
        pool.terminate()
        pool.join()


def _counters(n_proc: int) -> Any:
    """(documents, tokens) per worker, summed by the progress bar; a raw array has no lock."""
    return mp.get_context("spawn").RawArray("q", 2 * (n_proc + 1))


def _new_pool(n_proc: int) -> tuple[Any, Any]:
    """A pool of `n_proc` spawned workers and their progress counters."""
    # spawn, not fork: a fork inherits locks that the parent's threads (fsspec's event loop,
    # tokenizers' pool, torch's) may hold, and the child then waits on them forever
    ctx = mp.get_context("spawn")
    counters = _counters(n_proc)
    # a worker reads with datasets, which imports torch when it can: 300 MB a worker
    saved = os.environ.get("USE_TORCH")
    os.environ["USE_TORCH"] = "0"
    try:
        return ctx.Pool(n_proc, _init_worker, (counters,)), counters
    finally:
        if saved is None:
            os.environ.pop("USE_TORCH", None)
        else:
            os.environ["USE_TORCH"] = saved


atexit.register(stop_workers)


def _progress(counters: Any, stop: threading.Event, n_units: int) -> None:
    from tqdm import tqdm

    start = time.perf_counter()
    with tqdm(desc="Preparing shards", unit=" docs", dynamic_ncols=True) as bar:
        while not stop.wait(0.5):
            docs, tokens = sum(counters[0::2]), sum(counters[1::2])
            rate = tokens / max(time.perf_counter() - start, 1e-9)
            bar.n = docs
            bar.set_postfix_str(f"{tokens:,} tokens, {rate:,.0f} tokens/s, {n_units} units")
        bar.n = sum(counters[0::2])
        bar.refresh()


def _unit_done(folder: Path, index: int) -> bool:
    """A unit is done when its json exists and its shard has exactly the bytes it records."""
    meta_path = folder / f"train-{index:05d}.json"
    if not meta_path.is_file():
        return False
    try:
        meta = _read_json(meta_path)
        size = (folder / f"train-{index:05d}.bin").stat().st_size
        ok = size == meta["n_tokens"] * np.dtype(meta["dtype"]).itemsize
    except (OSError, ValueError, KeyError):
        ok = False
    if not ok:
        log.warning("shard %s is damaged; preparing it again", meta_path.with_suffix(".bin"))
        meta_path.unlink(missing_ok=True)
    return ok


# --- reading ------------------------------------------------------------------------------
class ShardSet:
    """The prepared training shards, memory-mapped and cut into blocks of `block` tokens."""

    def __init__(self, folder: Path, block: int) -> None:
        manifest = _read_json(folder / "manifest.json")
        self.folder = folder
        self.block = block
        self.dtype = np.dtype(manifest["dtype"])
        self.vocab_size = int(manifest["vocab_size"])
        self.files = [folder / name for name, _ in manifest["shards"]]
        self.lengths = np.array([n for _, n in manifest["shards"]], dtype=np.int64)
        for path, n in zip(self.files, self.lengths.tolist(), strict=True):
            size = path.stat().st_size if path.is_file() else -1
            if size != n * self.dtype.itemsize:
                raise ConfigError(
                    "data.cache_dir",
                    f"shard {path} is truncated or missing ({size} bytes, expected "
                    f"{n * self.dtype.itemsize}); run python -m sinklab.data.prepare to rebuild it",
                )
        blocks = self.lengths // block
        self.block_ends = np.cumsum(blocks)
        self.n_blocks = int(self.block_ends[-1]) if len(blocks) else 0
        self.n_tokens = int(self.lengths.sum())
        self._maps: dict[int, np.ndarray] = {}

    @staticmethod
    def complete(folder: Path) -> bool:
        """The manifest is there and every shard has the size its json records (no reading)."""
        if not (folder / "manifest.json").is_file():
            return False
        try:
            manifest = _read_json(folder / "manifest.json")
            itemsize = np.dtype(manifest["dtype"]).itemsize
            for name, n in manifest["shards"]:
                if (folder / name).stat().st_size != n * itemsize:
                    log.warning("shard %s is damaged; preparing it again", folder / name)
                    (folder / name).with_suffix(".json").unlink(missing_ok=True)
                    (folder / "manifest.json").unlink()
                    return False
        except (OSError, ValueError, KeyError) as err:
            log.warning("shard set %s is unreadable (%s); preparing it again", folder, err)
            (folder / "manifest.json").unlink(missing_ok=True)
            return False
        return True

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_maps"] = {}  # DataLoader workers reopen the memory maps
        return state

    def _map(self, i: int) -> np.ndarray:
        if i not in self._maps:
            n = int(self.lengths[i])
            self._maps[i] = np.memmap(self.files[i], dtype=self.dtype, mode="r", shape=(n,))
        return self._maps[i]

    def where(self, blocks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(shard, token offset) of each block."""
        shard = np.searchsorted(self.block_ends, blocks, side="right")
        first = np.concatenate([[0], self.block_ends[:-1]])[shard]
        return shard, (blocks - first) * self.block

    def blocks(self, ids: np.ndarray) -> np.ndarray:
        """Blocks `ids` as one array [len(ids), block] (int64)."""
        out = np.empty((len(ids), self.block), dtype=np.int64)
        shards, offsets = self.where(np.asarray(ids, dtype=np.int64))
        for row, (s, o) in enumerate(zip(shards.tolist(), offsets.tolist(), strict=True)):
            out[row] = self._map(s)[o : o + self.block]
        return out


def _crc(path: Path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 24):
            crc = zlib.crc32(chunk, crc)
    return crc


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def _write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), unique=True)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, arr), unique=True)
