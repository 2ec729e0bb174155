"""The reanalysis table on disk: parquet (the record) plus a CSV twin for spreadsheets.

Both are written to a temp file in the same folder and renamed into place, so an
interrupted analysis leaves the previous complete table, never a torn one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sinklab.analysis.records import append_rows, read_rows
from sinklab.atomic import atomic_write


def write_parquet(path: Path, df: pd.DataFrame) -> None:
    """Replace the table at `path` with `df` (used by force=true to drop stale rows)."""
    atomic_write(path, lambda fh: df.to_parquet(fh, index=False))


def write_csv(parquet_path: Path) -> Path:
    """The CSV beside the parquet table, rewritten from it; returns the CSV path."""
    csv_path = parquet_path.with_suffix(".csv")
    df = read_rows(parquet_path)
    atomic_write(csv_path, lambda fh: fh.write(df.to_csv(index=False).encode("utf-8")))
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


__all__ = [
    "append_rows",
    "drop_checkpoints",
    "measured_checkpoints",
    "read_rows",
    "write_csv",
    "write_parquet",
]
