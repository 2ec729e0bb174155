"""The run's metric table on disk: a parquet file that only ever grows, written so that a
crash at any moment leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

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
    already on disk are read once, at the first append, and kept in memory as an Arrow table,
    so a probe converts and writes only what is new (old chunks are shared, not re-converted;
    converting the whole growing table each time was most of an append's cost).

    Only for a table no one else writes while this object lives; the file on disk is the same
    as writing the concatenated rows with `DataFrame.to_parquet`, written atomically each time.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._table: pa.Table | None = None

    def append(self, df: pd.DataFrame) -> None:
        if self._table is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._table = _to_arrow(read_rows(self.path))
        new = _to_arrow(_typed(df))
        table = (
            pa.concat_tables([self._table, new], promote_options="default")
            if self._table.num_rows
            else new
        )
        atomic_write(self.path, lambda fh: pq.write_table(table, fh))
        self._table = table

    def forget(self) -> None:
        """Drop the kept rows (the file changed under us, e.g. rows dropped on resume)."""
        self._table = None


def _to_arrow(df: pd.DataFrame) -> pa.Table:
    """What `DataFrame.to_parquet(index=False)` would write, as an Arrow table."""
    return pa.Table.from_pandas(df, preserve_index=False)
