"""Tokenized splits cached as memory-mapped .npy files, so a second run starts in seconds.

Each split is one packed stream `doc EOS doc EOS ...`. The `document_start` BOS variant
(`BOS doc EOS BOS doc EOS ...`) is derived once from the document offsets and cached beside it.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

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
        self.hit = all(self._valid(name) for name in splits)
        if not self.hit:
            self.folder.mkdir(parents=True, exist_ok=True)
            for name, docs in splits.items():
                if not self._valid(name):
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
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
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
        }
        _save_text(self.folder / f"{name}.json", json.dumps(meta))

    def _valid(self, name: str) -> bool:
        meta_path = self.folder / f"{name}.json"
        if not meta_path.is_file():
            return False
        try:
            meta = json.loads(meta_path.read_text())
            arr = np.load(self.folder / f"{name}.npy", mmap_mode="r")
            starts = np.load(self.folder / f"{name}_docs.npy")
            ok = (
                arr.shape[0] == meta["n_tokens"]
                and len(starts) == meta["n_docs"]
                and arr.dtype == np.dtype(meta["dtype"])
                and meta["vocab_size"] == self.tokenizer.vocab_size
            )
        except Exception as err:  # noqa: BLE001 - any damage means rebuild
            warnings.warn(
                f"token cache {self.folder}/{name} is unreadable ({err}); rebuilding it",
                stacklevel=3,
            )
            return False
        if not ok:
            warnings.warn(
                f"token cache {self.folder}/{name} does not match its metadata; rebuilding it",
                stacklevel=3,
            )
        return ok

    def _bos_stream(self, split: str) -> np.ndarray:
        path = self.folder / f"{split}_bos.npy"
        plain = self.stream(split)
        expected = plain.shape[0] + len(self.doc_starts(split))
        if path.is_file():
            try:
                arr = np.load(path, mmap_mode="r")
                if arr.shape[0] == expected:
                    return arr
            except Exception:  # noqa: BLE001
                pass
        bos = self.tokenizer.bos_id
        if bos is None:
            raise ValueError("bos=document_start needs a tokenizer with a BOS token")
        arr = np.insert(np.asarray(plain), self.doc_starts(split), bos).astype(self.dtype)
        _save(path, arr)
        return np.load(path, mmap_mode="r")


def _save(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, arr), unique=True)


def _save_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), unique=True)
