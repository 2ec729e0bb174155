"""The reanalysis table on disk: parquet (the record) plus a CSV twin for spreadsheets.

Both are written to a temp file in the same folder and renamed into place, so an
interrupted analysis leaves the previous complete table, never a torn one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import pandas as pd

from sinklab.analysis.records import append_rows, read_rows

TABLE_NAME = "reanalysis.parquet"


def _atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through `write` into a temp file beside `path`, fsync, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_parquet(path: Path, df: pd.DataFrame) -> None:
    """Replace the table at `path` with `df` (used by force=true to drop stale rows)."""
    _atomic(path, lambda fh: df.to_parquet(fh, index=False))


def write_csv(parquet_path: Path) -> Path:
    """The CSV beside the parquet table, rewritten from it; returns the CSV path."""
    csv_path = parquet_path.with_suffix(".csv")
    df = read_rows(parquet_path)
    _atomic(csv_path, lambda fh: fh.write(df.to_csv(index=False).encode("utf-8")))
    return csv_path


def measured_checkpoints(path: Path, run_id: str) -> set[str]:
    """Checkpoint names that already have rows for `run_id` in the table."""
    df = read_rows(path)
    if not len(df):
        return set()
    return set(df.loc[df["run_id"] == run_id, "checkpoint"].dropna().astype(str))


def drop_checkpoints(path: Path, run_id: str, names: set[str]) -> None:
    """Remove the rows of `names` for `run_id` (force=true re-measures them from scratch)."""
    df = read_rows(path)
    if not len(df) or not names:
        return
    stale = (df["run_id"] == run_id) & df["checkpoint"].isin(list(names))
    if bool(stale.any()):
        write_parquet(path, df[~stale].reset_index(drop=True))


__all__ = ["TABLE_NAME", "append_rows", "drop_checkpoints", "measured_checkpoints", "read_rows", "write_csv", "write_parquet"]
