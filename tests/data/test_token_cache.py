"""Issue #32: the token cache checks its document-offsets file instead of trusting it.

Under bos=document_start the offsets decide where BOS lands, so a stale or damaged offsets file
must be rebuilt, never used. The corpus is three hand-made documents whose boundaries are known:
`aaa`, `bbbbb`, `cc`, so the BOS stream is `B a a a E B b b b b b E B c c E`, with BOS at 0, 5
and 12.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from sinklab.data.token_cache import TokenCache, offsets_digest, offsets_problem
from sinklab.data.tokenizer import CharTokenizer
from sinklab.data.windows import WindowSpec, cut

DOCS = ["aaa", "bbbbb", "cc"]
TOK = CharTokenizer("abc")  # a, b, c = 0, 1, 2; then <bos> 3, <eos> 4, <pad> 5
A, B, C, BOS, EOS = 0, 1, 2, TOK.bos_id, TOK.eos_id
PLAIN = [A, A, A, EOS, B, B, B, B, B, EOS, C, C, EOS]
WITH_BOS = [BOS, A, A, A, EOS, BOS, B, B, B, B, B, EOS, BOS, C, C, EOS]
TRUE_BOS_AT = [0, 5, 12]
SEQ_LEN = 6


def _cache(root: Path) -> TokenCache:
    return TokenCache(root, TOK, {"train": DOCS, "val": ["abc"]})


def _window_bos_positions(cache: TokenCache) -> list[list[int]]:
    """BOS positions of every training window, read the way training reads the stream (the
    memory-mapped file that `path` names, cut by `windows.cut`)."""
    stream = np.load(cache.path("train", with_bos=True), mmap_mode="r")
    spec = WindowSpec(SEQ_LEN, "document_start", BOS, 0, SEQ_LEN)
    starts = np.arange(len(stream) - spec.window_tokens + 1)
    inputs, _ = cut(stream, starts, spec)
    return [np.flatnonzero(row == BOS).tolist() for row in inputs]


def _expected_window_bos_positions() -> list[list[int]]:
    """The true document starts seen from each window (independent of the cache)."""
    n_windows = len(WITH_BOS) - (SEQ_LEN + 1) + 1
    return [[p - s for p in TRUE_BOS_AT if s <= p < s + SEQ_LEN] for s in range(n_windows)]


def test_hand_built_corpus_gives_bos_at_each_document_start(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    assert cache.hit is False
    assert cache.stream("train").tolist() == PLAIN
    assert cache.doc_starts("train").tolist() == [0, 4, 10]
    assert cache.stream("train", with_bos=True).tolist() == WITH_BOS
    assert _window_bos_positions(cache) == _expected_window_bos_positions()
    assert _expected_window_bos_positions()[:3] == [[0, 5], [4], [3]]  # the helper, by hand


def test_a_sound_cache_is_reused_without_a_warning(tmp_path: Path) -> None:
    first = _cache(tmp_path)
    first.path("train", with_bos=True)
    stamps = {p.name: p.stat().st_mtime_ns for p in first.folder.iterdir()}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = _cache(tmp_path)
        assert again.hit is True
        assert again.stream("train", with_bos=True).tolist() == WITH_BOS
    assert {p.name: p.stat().st_mtime_ns for p in again.folder.iterdir()} == stamps


# Each damage, and the reason the one warning gives for the rebuild.
NOT_INCREASING = "the document offsets are not 0 then strictly increasing inside the stream"
DAMAGE = {
    "truncated": ([0, 4], "the document-offsets file holds 2 offsets for 3 documents"),
    "shuffled": ([4, 0, 10], NOT_INCREASING),
    "past the end": ([0, 4, 13], NOT_INCREASING),
    "another corpus's": ([0, 3, 7], "a document offset does not follow an EOS token"),
    "float": ([0.0, 4.0, 10.0], "the document offsets are float64, not integers"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("bos_stream_cached", [False, True], ids=["fresh", "bos-cached"])
def test_damaged_offsets_are_rebuilt_and_bos_lands_on_the_true_starts(
    tmp_path: Path, damage: str, bos_stream_cached: bool
) -> None:
    cache = _cache(tmp_path)
    bos_file = cache.path("train", with_bos=True)
    if not bos_stream_cached:
        bos_file.unlink()
    offsets, reason = DAMAGE[damage]
    np.save(cache.folder / "train_docs.npy", np.array(offsets))
    with pytest.warns(UserWarning) as warned:
        again = _cache(tmp_path)
    (line,) = [str(w.message) for w in warned]  # one line, naming the split and why
    assert line == f"token cache {cache.folder}/train: {reason}; rebuilding it"
    assert again.hit is False
    assert again.doc_starts("train").tolist() == [0, 4, 10]
    assert again.stream("train", with_bos=True).tolist() == WITH_BOS
    assert _window_bos_positions(again) == _expected_window_bos_positions()


def test_unreadable_offsets_and_metadata_without_a_digest_are_rebuilt(tmp_path: Path) -> None:
    cache = _cache(tmp_path)
    (cache.folder / "train_docs.npy").write_bytes(b"\x93NUMPY torn")
    with pytest.warns(UserWarning, match=r"/train: unreadable \(.*\); rebuilding it"):
        assert _cache(tmp_path).doc_starts("train").tolist() == [0, 4, 10]

    meta_path = cache.folder / "train.json"
    meta = json.loads(meta_path.read_text())
    del meta["docs_sha256"]  # a cache written before the digest existed
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(UserWarning, match="predates the offsets and tokens digests; rebuilding it"):
        again = _cache(tmp_path)
    assert json.loads(meta_path.read_text())["docs_sha256"] == offsets_digest(np.array([0, 4, 10]))
    assert again.stream("train", with_bos=True).tolist() == WITH_BOS


def test_a_bos_stream_built_from_wrong_offsets_is_derived_again(tmp_path: Path) -> None:
    """What the old cache left behind: a BOS stream of the right length with BOS in the wrong
    places (from offsets [0, 2, 9]), and a BOS stream without the record of its offsets."""
    cache = _cache(tmp_path)
    bos_file = cache.path("train", with_bos=True)
    wrong = np.insert(np.array(PLAIN), [0, 2, 9], BOS).astype(np.uint16)
    assert len(wrong) == len(WITH_BOS) and wrong.tolist() != WITH_BOS
    np.save(bos_file, wrong)
    assert _cache(tmp_path).stream("train", with_bos=True).tolist() == WITH_BOS

    np.save(bos_file, wrong)
    (cache.folder / "train_bos.json").unlink()
    assert _window_bos_positions(_cache(tmp_path)) == _expected_window_bos_positions()


def test_a_bos_stream_derived_from_other_tokens_is_derived_again(tmp_path: Path) -> None:
    """BOS in the right places is not enough: a BOS stream whose record names other tokens
    (here its document bodies are all `c`) is stale, and is derived again."""
    cache = _cache(tmp_path)
    bos_file = cache.path("train", with_bos=True)
    stale = np.array(WITH_BOS, dtype=np.uint16)
    stale[(stale != BOS) & (stale != EOS)] = C
    np.save(bos_file, stale)
    record_path = cache.folder / "train_bos.json"
    record = json.loads(record_path.read_text())
    stale_plain = np.delete(stale, TRUE_BOS_AT)
    record["tokens_sha256"] = hashlib.sha256(stale_plain.tobytes()).hexdigest()
    record_path.write_text(json.dumps(record))
    assert _cache(tmp_path).stream("train", with_bos=True).tolist() == WITH_BOS


def test_a_rebuilt_split_keeps_a_bos_stream_of_the_same_content(tmp_path: Path) -> None:
    """The BOS stream is never deleted (a job sharing the cache may have it memory-mapped): a
    split rebuilt to the same tokens and offsets reuses it untouched."""
    cache = _cache(tmp_path)
    bos_file = cache.path("train", with_bos=True)
    stamp = bos_file.stat().st_mtime_ns
    (cache.folder / "train.npy").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="rebuilding it"):
        again = _cache(tmp_path)
    assert again.stream("train", with_bos=True).tolist() == WITH_BOS
    assert bos_file.stat().st_mtime_ns == stamp


class _ListTokenizer:
    """Documents given directly as ids, so a document may hold the EOS id itself (a BPE
    encodes the literal text `<eos>` to it): the case only the digest can catch."""

    vocab_size, bos_id, eos_id, pad_id = 8, 6, 7, None

    def encode_docs(self, docs: list[str]) -> list[np.ndarray]:
        return [np.array([int(t) for t in d.split()], dtype=np.int64) for d in docs]

    def fingerprint(self) -> str:
        return "list-v1"


def test_offsets_that_keep_their_shape_are_caught_by_the_digest(tmp_path: Path) -> None:
    tok = _ListTokenizer()
    docs = ["1", "2 7 3"]  # the second document holds an EOS id: stream 1 E 2 E 3 E
    cache = TokenCache(tmp_path, tok, {"train": docs})  # type: ignore[arg-type]
    assert cache.stream("train").tolist() == [1, 7, 2, 7, 3, 7]
    meta = json.loads((cache.folder / "train.json").read_text())
    stream = cache.stream("train")
    assert offsets_problem(np.array([0, 2]), stream, 7, meta) is None
    shifted = np.array([0, 4])  # 0, increasing, inside, after an EOS: only the digest differs
    assert offsets_problem(shifted, stream, 7, meta) == (
        "the document offsets differ from the digest recorded when they were written"
    )
    np.save(cache.folder / "train_docs.npy", shifted)
    with pytest.warns(UserWarning, match="differ from the digest"):
        again = TokenCache(tmp_path, tok, {"train": docs})  # type: ignore[arg-type]
    assert again.stream("train", with_bos=True).tolist() == [6, 1, 7, 6, 2, 7, 3, 7]


def test_an_empty_split_is_a_cache_hit(tmp_path: Path) -> None:
    TokenCache(tmp_path, TOK, {"train": DOCS, "val": []})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = TokenCache(tmp_path, TOK, {"train": DOCS, "val": []})
    assert again.hit is True and again.doc_starts("val").tolist() == []
