"""The run table: appends accumulate, and a crash mid-write leaves the old rows readable."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from sinklab import atomic
from sinklab.analysis import records


def chunk(step: int, n: int = 3) -> pd.DataFrame:
    df = pd.DataFrame(
        {
            "layer": [0] * n,
            "head": list(range(n)),
            "metric": ["sink/alpha/key_0"] * n,
            "value": [0.1 * step] * n,
        }
    )
    return records.tag_rows(
        df, run_id="r1", step=step, tokens_seen=step * 1000, config_hash="abc", checkpoint=""
    )


def test_tag_rows_puts_run_columns_in_schema_order():
    df = chunk(2)
    assert list(df.columns) == records.RUN_COLUMNS
    assert df.step.dtype == "int64" and df.value.dtype == "float64"


def test_append_accumulates_and_reads_back(tmp_path):
    path = tmp_path / "metrics" / "probes.parquet"
    assert len(records.read_rows(path)) == 0
    records.append_rows(path, chunk(0))
    records.append_rows(path, chunk(5, n=2))
    back = records.read_rows(path)
    assert back.step.tolist() == [0, 0, 0, 5, 5]
    assert back.tokens_seen.tolist()[-1] == 5000
    assert back.value.tolist()[-1] == pytest.approx(0.5)
    assert [p.name for p in path.parent.iterdir()] == ["probes.parquet"]  # no temp left behind


def test_crash_before_replace_keeps_previous_rows(tmp_path, monkeypatch):
    path = tmp_path / "probes.parquet"
    records.append_rows(path, chunk(0))
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise KeyboardInterrupt("killed between write and rename")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        records.append_rows(path, chunk(1))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert records.read_rows(path).step.tolist() == [0, 0, 0]


def test_crash_while_writing_the_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "probes.parquet"
    records.append_rows(path, chunk(0))

    def torn_write(self, fh, **kwargs):
        fh.write(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", torn_write)
    with pytest.raises(OSError):
        records.append_rows(path, chunk(1))
    monkeypatch.undo()
    assert records.read_rows(path).step.tolist() == [0, 0, 0]


def test_leftover_temp_file_from_a_killed_writer_is_harmless(tmp_path):
    path = tmp_path / "probes.parquet"
    records.append_rows(path, chunk(0))
    # a writer killed with SIGKILL never reaches its cleanup: its torn temp file stays
    (tmp_path / ".probes.parquet.dead.tmp").write_bytes(b"PAR1 torn")
    assert records.read_rows(path).step.tolist() == [0, 0, 0]
    records.append_rows(path, chunk(1))
    assert records.read_rows(path).step.tolist() == [0, 0, 0, 1, 1, 1]


def test_replace_is_the_only_step_that_touches_the_table(tmp_path, monkeypatch):
    """The table's bytes change only through os.replace of a complete, fsynced file."""
    path = tmp_path / "probes.parquet"
    records.append_rows(path, chunk(0))
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(pd.read_parquet(src).step.tolist())  # the new file is complete before the swap
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", spy)
    records.append_rows(path, chunk(4))
    assert seen == [[0, 0, 0, 4, 4, 4]]
