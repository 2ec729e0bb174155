"""The probe callback's appender writes the same table as `append_rows`, reads the disk once,
and sees rows dropped under it only after `forget()` (what a resume does)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sinklab.analysis import records
from sinklab.analysis.records import TableAppender, append_rows, read_rows, tag_rows


def _chunk(step: int, n: int = 3) -> pd.DataFrame:
    df = pd.DataFrame(
        {"layer": range(n), "head": [-1] * n, "metric": ["m"] * n, "value": [step + 0.5] * n}
    )
    return tag_rows(df, run_id="r", step=step, tokens_seen=10 * step)


def test_appender_writes_what_append_rows_writes(tmp_path: Path, monkeypatch) -> None:
    plain, kept = tmp_path / "a" / "t.parquet", tmp_path / "b" / "t.parquet"
    append_rows(plain, _chunk(0))  # a table already on disk (a resumed run)
    append_rows(kept, _chunk(0))
    reads = []
    real = records.read_rows
    monkeypatch.setattr(records, "read_rows", lambda p: reads.append(p) or real(p))
    appender = TableAppender(kept)
    for step in (1, 2, 3):
        append_rows(plain, _chunk(step))
        appender.append(_chunk(step))
    pd.testing.assert_frame_equal(read_rows(kept), read_rows(plain))
    assert list(read_rows(kept)["step"]) == [0] * 3 + [1] * 3 + [2] * 3 + [3] * 3
    assert reads.count(kept) == 1, "the appender reads the table once, at its first append"


def test_forget_rereads_a_table_changed_under_it(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    appender = TableAppender(path)
    appender.append(_chunk(0))
    appender.append(_chunk(1))
    rows = read_rows(path)
    rows[rows["step"] == 0].to_parquet(path, index=False)  # another writer drops step 1
    appender.forget()
    appender.append(_chunk(2))
    assert sorted(read_rows(path)["step"].unique()) == [0, 2]
