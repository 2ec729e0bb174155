"""Tokenizers behind one small interface: byte-level BPE (trained, cached), tokenizer.json, bytes, chars.

Everything downstream needs only `encode`, `decode`, `vocab_size` and the special ids, so the
trainer and the probe code never care which kind was chosen.

With `data.objective=mlm` every kind gains a mask token (`<mask>`, after the others, so the
ids of the clm tokenizers never move); a clm run's tokenizer has none. The mask changes each
tokenizer's fingerprint and the BPE cache key, so the two never share a cache entry.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from sinklab.atomic import atomic_write
from sinklab.data.config import DataConfig
from sinklab.errors import ConfigError

log = logging.getLogger(__name__)

SPECIALS = ("<bos>", "<eos>", "<pad>")
MASK = "<mask>"
# Names other tokenizer.json files use for the same roles (GPT-2, Llama, BERT, RoBERTa, ...).
_ALIASES = {
    "bos": ("<bos>", "<s>", "<|begin_of_text|>", "<|endoftext|>"),
    "eos": ("<eos>", "</s>", "<|end_of_text|>", "<|endoftext|>"),
    "pad": ("<pad>", "<|pad|>"),
    "mask": ("<mask>", "[MASK]"),
}


def specials_for(cfg: DataConfig) -> tuple[str, ...]:
    """The special tokens a trained tokenizer gets: `<mask>` after the others for mlm."""
    return (*SPECIALS, MASK) if cfg.is_mlm else SPECIALS


class Tokenizer(Protocol):
    vocab_size: int
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    mask_id: int | None

    def encode(self, text: str) -> list[int]: ...
    def decode(self, ids: Sequence[int]) -> str: ...
    def encode_docs(self, docs: Sequence[str]) -> list[np.ndarray]: ...
    def fingerprint(self) -> str: ...


class HFTokenizer:
    """A `tokenizers.Tokenizer` (trained BPE or any tokenizer.json)."""

    def __init__(self, tok, source: str = "tokenizer.json") -> None:  # noqa: ANN001
        self.tok = tok
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.bos_id = _find(tok, "bos")
        self.eos_id = _find(tok, "eos")
        self.pad_id = _find(tok, "pad")
        self.mask_id = _find(tok, "mask")
        if self.eos_id is None:
            raise ConfigError(
                "data.tokenizer.path",
                f"{source} has no EOS token (looked for {', '.join(_ALIASES['eos'])}); "
                "documents are packed with EOS between them",
            )

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def encode_docs(self, docs: Sequence[str]) -> list[np.ndarray]:
        encs = self.tok.encode_batch(list(docs), add_special_tokens=False)
        return [np.asarray(e.ids, dtype=np.int64) for e in encs]

    def fingerprint(self) -> str:
        return hashlib.sha256(self.tok.to_str().encode()).hexdigest()


class ByteTokenizer:
    """UTF-8 bytes 0..255 plus <bos>, <eos>, <pad> (and <mask> with `mask`): needs no
    training, never sees an unknown."""

    def __init__(self, mask: bool = False) -> None:
        self.specials = (*SPECIALS, MASK) if mask else SPECIALS
        self.vocab_size = 256 + len(self.specials)
        self.bos_id, self.eos_id, self.pad_id = 256, 257, 258
        self.mask_id: int | None = 259 if mask else None

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        out, buf = [], bytearray()
        for i in ids:
            i = int(i)
            if i < 256:
                buf.append(i)
                continue
            out.append(buf.decode("utf-8", errors="replace"))
            buf = bytearray()
            out.append(self.specials[i - 256])
        out.append(buf.decode("utf-8", errors="replace"))
        return "".join(out)

    def encode_docs(self, docs: Sequence[str]) -> list[np.ndarray]:
        return [np.frombuffer(d.encode("utf-8"), dtype=np.uint8).astype(np.int64) for d in docs]

    def fingerprint(self) -> str:
        return "byte-v1" if self.mask_id is None else "byte-mask-v1"


class CharTokenizer:
    """One id per character of a fixed alphabet, then the special tokens."""

    def __init__(self, chars: Iterable[str], specials: Sequence[str] = SPECIALS) -> None:
        self.chars = sorted(set(chars))
        self.specials = tuple(specials)
        self._codes = np.array([ord(c) for c in self.chars], dtype=np.uint32)
        self.vocab_size = len(self.chars) + len(self.specials)
        ids = {name: len(self.chars) + k for k, name in enumerate(self.specials)}
        self.bos_id = ids.get("<bos>")
        self.eos_id = ids.get("<eos>")
        self.pad_id = ids.get("<pad>")
        self.mask_id = ids.get(MASK)

    def encode_array(self, text: str) -> np.ndarray:
        codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
        idx = np.searchsorted(self._codes, codes)
        idx = np.minimum(idx, len(self._codes) - 1)
        bad = self._codes[idx] != codes
        if bad.any():
            raise ValueError(f"character {chr(int(codes[bad][0]))!r} is not in the alphabet")
        return idx.astype(np.int64)

    def encode(self, text: str) -> list[int]:
        return self.encode_array(text).tolist()

    def decode(self, ids: Sequence[int]) -> str:
        n = len(self.chars)
        return "".join(self.chars[i] if i < n else self.specials[i - n] for i in map(int, ids))

    def encode_docs(self, docs: Sequence[str]) -> list[np.ndarray]:
        return [self.encode_array(d) for d in docs]

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps([self.chars, self.specials]).encode()).hexdigest()


def corpus_fingerprint(docs: Iterable[str]) -> str:
    """A hash of the documents and their boundaries: the cache key's corpus half."""
    h = hashlib.sha256()
    for d in docs:
        data = d.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def build_tokenizer(
    cfg: DataConfig, train_docs: Sequence[str], all_docs: Sequence[str]
) -> Tokenizer:
    """The configured tokenizer; a BPE is trained on the training split only and cached.
    With objective=mlm it has a mask token, or this raises a one-line ConfigError."""
    tok = _build(cfg, train_docs, all_docs)
    if cfg.is_mlm and getattr(tok, "mask_id", None) is None:
        raise ConfigError(
            "data.tokenizer.path",
            f"{cfg.tokenizer.path} has no mask token (looked for {', '.join(_ALIASES['mask'])}); "
            "objective=mlm needs one",
        )
    return tok


def _build(cfg: DataConfig, train_docs: Sequence[str], all_docs: Sequence[str]) -> Tokenizer:
    kind = cfg.tokenizer.kind
    if kind == "byte":
        return ByteTokenizer(mask=cfg.is_mlm)
    if kind == "char":
        return CharTokenizer(set().union(*map(set, all_docs)), specials_for(cfg))
    if kind == "file":
        return _from_file(Path(str(cfg.tokenizer.path)).expanduser(), "data.tokenizer.path")
    if kind == "pretrained":
        return load_pretrained(cfg)
    if cfg.tokenizer.train_documents is not None:
        train_docs = train_docs[: cfg.tokenizer.train_documents]
    return _cached_bpe(cfg, train_docs)


def _from_file(path: Path, key: str) -> HFTokenizer:
    from tokenizers import Tokenizer as RawTokenizer

    try:
        return HFTokenizer(RawTokenizer.from_file(str(path)), source=str(path))
    except ConfigError:
        raise
    except Exception as err:  # tokenizers raises a bare Exception on bad JSON
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(key, f"cannot load {path}: {first}") from err


def load_pretrained(cfg: DataConfig) -> HFTokenizer:
    """A published tokenizer, with its own special tokens: `tokenizer.name` is a local
    tokenizer.json, a folder holding one, or a hub id (Llama-2's, GPT-NeoX's, GPT-2's ...)
    fetched by `tokenizers` at `tokenizer.revision`."""
    from tokenizers import Tokenizer as RawTokenizer

    name = str(cfg.tokenizer.name)
    local = Path(name).expanduser()
    if local.is_dir():
        local = local / "tokenizer.json"
    if local.is_file():
        return _from_file(local, "data.tokenizer.name")
    try:
        raw = RawTokenizer.from_pretrained(name, revision=cfg.tokenizer.revision or "main")
    except Exception as err:  # tokenizers raises a bare Exception when the hub is unreachable
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ConfigError(
            "data.tokenizer.name",
            f"cannot load {name!r} (neither a local tokenizer.json nor reachable on the hub): "
            f"{first}",
        ) from err
    return HFTokenizer(raw, source=name)


def bpe_cache_path(cfg: DataConfig, train_docs: Sequence[str]) -> Path:
    settings = json.dumps(
        {
            "kind": "bpe-bytelevel-v1",
            "vocab_size": cfg.tokenizer.vocab_size,
            "specials": specials_for(cfg),
        },
        sort_keys=True,
    )
    key = hashlib.sha256((corpus_fingerprint(train_docs) + settings).encode()).hexdigest()[:20]
    return cfg.cache_root() / "tokenizers" / key / "tokenizer.json"


def shard_tokenizer(cfg: DataConfig) -> Tokenizer:
    """The tokenizer of a storage=shards run, built without reading the corpus whole: a BPE
    is trained on the first `tokenizer.train_documents` training documents (after the
    validation documents) and cached under the source's identity (documents.py)."""
    kind = cfg.tokenizer.kind
    if kind != "bpe":
        return _build(cfg, [], [])
    from tokenizers import Tokenizer as RawTokenizer

    from sinklab.data import documents

    settings = {
        "kind": "bpe-bytelevel-sample-v1",
        "vocab_size": cfg.tokenizer.vocab_size,
        "specials": specials_for(cfg),
        "identity": documents.source_identity(cfg),
        "train_documents": cfg.tokenizer.train_documents,
        "val_documents": cfg.shards.val_documents,
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
    path = cfg.cache_root() / "tokenizers" / key / "tokenizer.json"
    if path.is_file():
        return HFTokenizer(RawTokenizer.from_file(str(path)), source=str(path))
    sample = documents.sample(
        cfg, skip=cfg.shards.val_documents, count=cfg.tokenizer.train_documents
    )
    tok = train_bpe(sample, cfg.tokenizer.vocab_size, specials_for(cfg))
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, tok.to_str())
    return HFTokenizer(tok, source=str(path))


def _cached_bpe(cfg: DataConfig, train_docs: Sequence[str]) -> HFTokenizer:
    from tokenizers import Tokenizer as RawTokenizer

    path = bpe_cache_path(cfg, train_docs)
    if path.is_file():
        try:
            tok = HFTokenizer(RawTokenizer.from_file(str(path)), source=str(path))
            if tok.bos_id is None or tok.pad_id is None or (cfg.is_mlm and tok.mask_id is None):
                raise ValueError("special tokens missing")
            log.info("loaded cached tokenizer %s", path)
            return tok
        except Exception as err:  # noqa: BLE001 - any unreadable cache is rebuilt
            warnings.warn(
                f"tokenizer cache {path} is unreadable ({err}); rebuilding it", stacklevel=2
            )
    tok = train_bpe(train_docs, cfg.tokenizer.vocab_size, specials_for(cfg))
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, tok.to_str())
    return HFTokenizer(tok, source=str(path))


def train_bpe(  # noqa: ANN201 - a tokenizers.Tokenizer
    docs: Sequence[str], vocab_size: int, specials: Sequence[str] = SPECIALS
):
    """Train a GPT-2-style byte-level BPE with <bos>, <eos>, <pad> (, <mask>) as ids 0, 1, 2 (, 3)."""
    from tokenizers import Tokenizer as RawTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = RawTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(specials),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    return tok


def _find(tok, role: str) -> int | None:  # noqa: ANN001
    for name in _ALIASES[role]:
        idx = tok.token_to_id(name)
        if idx is not None:
            return int(idx)
    return None


def _atomic_write(path: Path, text: str) -> None:
    """Write then rename, so a concurrent job never reads half a file."""
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")), unique=True)
