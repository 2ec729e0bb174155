"""Tokenized splits cached as memory-mapped .npy files, so a second run starts in seconds.

Each split is one packed stream `doc EOS doc EOS ...`. The `document_start` BOS variant
(`BOS doc EOS BOS doc EOS ...`) is derived once from the document offsets and cached beside it.

The offsets decide where BOS lands, so they are checked on every load, not trusted: a digest
recorded when they were written, a first offset of 0, strictly increasing, inside the stream,
and an EOS just before every document start. A split that fails any check is rebuilt, with one
warning saying why; the BOS stream is reused only when it was derived from the same offsets and
tokens (digests recorded beside it).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sinklab.atomic import atomic_write
from sinklab.data.tokenizer import Tokenizer, corpus_fingerprint


class TokenCache:
    """The packed token streams of the train and validation splits for one (corpus, tokenizer)."""

    def __init__(self, root: Path, tokenizer: Tokenizer, splits: dict[str, Sequence[str]]) -> None:
        key = hashlib.sha256(
            json.dumps(
                [
                    tokenizer.fingerprint(),
                    {k: corpus_fingerprint(v) for k, v in sorted(splits.items())},
                ]
            ).encode()
        ).hexdigest()[:20]
        self.folder = root / "tokens" / key
        self.tokenizer = tokenizer
        self.dtype = np.uint16 if tokenizer.vocab_size <= np.iinfo(np.uint16).max else np.uint32
        self._streams: dict[tuple[str, bool], np.ndarray] = {}
        problems = {name: self._problem(name) for name in splits}
        self.hit = not any(problems.values())
        for name, docs in splits.items():
            if problems[name] is None:
                continue
            if problems[name] != _MISSING:
                warnings.warn(
                    f"token cache {self.folder}/{name}: {problems[name]}; rebuilding it",
                    stacklevel=2,
                )
            self.folder.mkdir(parents=True, exist_ok=True)
            self._write(name, docs)

    def stream(self, split: str, with_bos: bool = False) -> np.ndarray:
        """The split's packed tokens, memory-mapped (read-only)."""
        key = (split, with_bos)
        if key not in self._streams:
            if with_bos:
                self._streams[key] = self._bos_stream(split)
            else:
                self._streams[key] = np.load(self.folder / f"{split}.npy", mmap_mode="r")
        return self._streams[key]

    def path(self, split: str, with_bos: bool = False) -> Path:
        """The .npy file of a stream (built first if needed), for workers to memory-map."""
        self.stream(split, with_bos)
        return self.folder / (f"{split}_bos.npy" if with_bos else f"{split}.npy")

    def doc_starts(self, split: str) -> np.ndarray:
        return np.load(self.folder / f"{split}_docs.npy")

    def n_tokens(self, split: str) -> int:
        return int(self.stream(split).shape[0])

    # --- building -------------------------------------------------------------------------
    def _write(self, name: str, docs: Sequence[str]) -> None:
        eos = self.tokenizer.eos_id
        pieces = self.tokenizer.encode_docs(docs)
        lengths = np.array([len(p) + 1 for p in pieces], dtype=np.int64)
        starts = np.cumsum(lengths) - lengths  # 0, then each document's end + 1
        stream = np.empty(int(lengths.sum()), dtype=self.dtype)
        for start, piece in zip(starts, pieces, strict=True):
            stream[start : start + len(piece)] = piece
            stream[start + len(piece)] = eos
        _save(self.folder / f"{name}_docs.npy", starts)
        _save(self.folder / f"{name}.npy", stream)
        meta = {
            "n_tokens": int(stream.shape[0]),
            "n_docs": len(docs),
            "dtype": np.dtype(self.dtype).name,
            "vocab_size": self.tokenizer.vocab_size,
            "docs_sha256": offsets_digest(starts),
            # names the content the BOS stream is derived from (computed once, never re-read)
            "tokens_sha256": hashlib.sha256(stream.tobytes()).hexdigest(),
        }
        _save_text(self.folder / f"{name}.json", json.dumps(meta))  # last: marks the split whole

    def _problem(self, name: str) -> str | None:
        """Why the cached split cannot be used (None when it can; `_MISSING` when never built)."""
        meta_path = self.folder / f"{name}.json"
        if not meta_path.is_file():
            return _MISSING
        try:
            meta = json.loads(meta_path.read_text())
            arr = np.load(self.folder / f"{name}.npy", mmap_mode="r")
            starts = np.load(self.folder / f"{name}_docs.npy")
            if (
                arr.ndim != 1
                or arr.shape[0] != meta["n_tokens"]
                or arr.dtype != np.dtype(meta["dtype"])
                or meta["vocab_size"] != self.tokenizer.vocab_size
            ):
                return "the token file does not match its metadata"
            if "docs_sha256" not in meta or "tokens_sha256" not in meta:
                return "its metadata predates the offsets and tokens digests"
            return offsets_problem(starts, arr, self.tokenizer.eos_id, meta)
        except Exception as err:  # noqa: BLE001 - any damage means rebuild
            return f"unreadable ({err})"

    def _bos_stream(self, split: str) -> np.ndarray:
        """`BOS doc EOS BOS doc EOS ...`, derived from the (checked) offsets and tokens; a cached
        copy is reused only when its record names the same two digests as the split's metadata
        and BOS sits at every document start.

        Never deleted, only replaced atomically: two jobs of a sweep may share the cache, and
        one must not remove a file the other has just memory-mapped."""
        path, record_path = self.folder / f"{split}_bos.npy", self.folder / f"{split}_bos.json"
        plain = self.stream(split)
        starts = self.doc_starts(split)
        meta = json.loads((self.folder / f"{split}.json").read_text())
        derived_from = {k: meta[k] for k in ("docs_sha256", "tokens_sha256")}
        at = starts + np.arange(len(starts))  # where each document's BOS lands
        bos = self.tokenizer.bos_id
        if bos is None:
            raise ValueError("bos=document_start needs a tokenizer with a BOS token")
        try:
            record = json.loads(record_path.read_text())
            arr = np.load(path, mmap_mode="r")
            if (
                {k: record.get(k) for k in derived_from} == derived_from
                and arr.shape == (plain.shape[0] + len(starts),)
                and bool(np.all(arr[at] == bos))
            ):
                return arr
        except Exception:  # noqa: BLE001 - missing or damaged: derive it again
            pass
        arr = np.insert(np.asarray(plain), starts, bos).astype(self.dtype)
        _save(path, arr)
        _save_text(record_path, json.dumps({**derived_from, "bos_id": bos}))
        return np.load(path, mmap_mode="r")


_MISSING = "not built yet"


def offsets_digest(starts: np.ndarray) -> str:
    """sha256 of the document offsets as little-endian int64: what the metadata records."""
    return hashlib.sha256(np.ascontiguousarray(starts, dtype="<i8").tobytes()).hexdigest()


def offsets_problem(
    starts: np.ndarray, stream: np.ndarray, eos_id: int | None, meta: dict[str, Any]
) -> str | None:
    """Why `starts` are not the document offsets of `stream` (None when they are).

    Each document ends in EOS, so offsets start at 0, strictly increase, stay inside the stream
    and follow an EOS; the stream ends in EOS. The digest then catches what keeps that shape
    (another corpus's offsets that happen to fall on EOS tokens, say)."""
    if starts.ndim != 1 or len(starts) != meta["n_docs"]:
        return (
            f"the document-offsets file holds {starts.size} offsets for {meta['n_docs']} documents"
        )
    if len(starts) == 0:
        return None if len(stream) == 0 else "the document-offsets file is empty"
    if not np.issubdtype(starts.dtype, np.integer):
        return f"the document offsets are {starts.dtype}, not integers"
    if starts[0] != 0 or np.any(np.diff(starts) <= 0) or starts[-1] >= len(stream):
        return "the document offsets are not 0 then strictly increasing inside the stream"
    if eos_id is not None and not (
        stream[-1] == eos_id and bool(np.all(stream[starts[1:] - 1] == eos_id))
    ):
        return "a document offset does not follow an EOS token"
    if offsets_digest(starts) != meta["docs_sha256"]:
        return "the document offsets differ from the digest recorded when they were written"
    return None


def _save(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, arr), unique=True)


def _save_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), unique=True)
