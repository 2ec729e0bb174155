"""One tiny trained run per test module, copied per test so tests may damage their copy."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.reanalysis.helpers import train_tiny


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("trained") / "run")


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    """A private copy (hard links would share damage: copy the bytes)."""
    dest = tmp_path / trained_run.name
    shutil.copytree(trained_run, dest)
    return dest
