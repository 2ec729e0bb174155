"""The run's metric table on disk: a parquet file that only ever grows, written so that a
crash at any moment leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sinklab.atomic import atomic_write

RUN_COLUMNS = [
    "run_id",
    "step",
    "tokens_seen",
    "layer",
    "head",
    "metric",
    "value",
    "config_hash",
    "checkpoint",
]
_DTYPES = {
    "run_id": "string",
    "step": "int64",
    "tokens_seen": "int64",
    "layer": "int64",
    "head": "int64",
    "metric": "string",
    "value": "float64",
    "config_hash": "string",
    "checkpoint": "string",
}


def tag_rows(df: pd.DataFrame, **constants: object) -> pd.DataFrame:
    """A copy of `df` with constant columns added in front (run_id=..., step=..., ...)."""
    out = df.copy()
    for i, (name, value) in enumerate(constants.items()):
        if name in out.columns:
            out[name] = value
        else:
            out.insert(i, name, value)
    return _typed(out)


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Known columns get one dtype everywhere, so appended chunks always concatenate."""
    known = {c: t for c, t in _DTYPES.items() if c in df.columns}
    ordered = [c for c in RUN_COLUMNS if c in df.columns] + [
        c for c in df.columns if c not in RUN_COLUMNS
    ]
    return df[ordered].astype(known)


def read_rows(path: Path | str) -> pd.DataFrame:
    """The table at `path`; an empty frame with the run columns when there is none yet.

    Only `path` itself is read: a temp file a crashed writer left beside it is ignored.
    """
    path = Path(path)
    if not path.exists():
        return _typed(pd.DataFrame({c: pd.Series(dtype=t) for c, t in _DTYPES.items()}))
    return _typed(pd.read_parquet(path))


def append_rows(path: Path | str, df: pd.DataFrame) -> None:
    """Append `df` to the parquet table at `path` (created with its folder if missing).

    Reads the old rows and writes old + new with `sinklab.atomic.atomic_write` (temp file in
    the same folder, fsync, rename, fsync the folder): a crash leaves the old table or the new.
    """
    TableAppender(path).append(df)


class TableAppender:
    """`append_rows` for one writer that appends many times (the probe callback): the rows
    already on disk are read once, at the first append, and kept in memory, so a probe costs
    one write of the table instead of a read and a write that both grow with the run.

    Only for a table no one else writes while this object lives; the file on disk is the same
    as `append_rows` would leave, written atomically each time.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._rows: pd.DataFrame | None = None

    def append(self, df: pd.DataFrame) -> None:
        if self._rows is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._rows = read_rows(self.path)
        new = _typed(df)
        rows = _typed(pd.concat([self._rows, new], ignore_index=True)) if len(self._rows) else new
        atomic_write(self.path, lambda fh: rows.to_parquet(fh, index=False))
        self._rows = rows

    def forget(self) -> None:
        """Drop the kept rows (the file changed under us, e.g. rows dropped on resume)."""
        self._rows = None
