"""Reanalysis of real (tiny) runs: same numbers as the callback, skip, force, damage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sinklab.analysis.records import read_rows
from sinklab.reanalysis import ReanalysisWarning, analyze, from_mapping

KEYS = ["run_id", "step", "tokens_seen", "layer", "head", "metric", "config_hash", "checkpoint"]


def _cfg(target: Path | str, **extra: object):
    return from_mapping({"target": str(target), "progress": False, **extra})


def test_reanalysis_equals_the_callback_exactly(run_copy: Path) -> None:
    (report,) = analyze(_cfg(run_copy))
    assert report.measured == [0, 1, 2, 4]
    assert report.table == run_copy / "metrics" / "reanalysis.parquet"
    logged = (
        read_rows(run_copy / "metrics" / "probes.parquet").sort_values(KEYS).reset_index(drop=True)
    )
    again = read_rows(report.table).sort_values(KEYS).reset_index(drop=True)
    # Same rows (same run_id, hash and checkpoint names), and bit-identical values.
    pd.testing.assert_frame_equal(again[KEYS], logged[KEYS])
    np.testing.assert_array_equal(again["value"].to_numpy(), logged["value"].to_numpy())
    assert again["metric"].str.startswith("massive/top1").any()
    csv = pd.read_csv(report.table.with_suffix(".csv"))
    assert len(csv) == len(again)


def test_corrupted_checkpoint_is_skipped_with_a_warning(run_copy: Path) -> None:
    bad = run_copy / "checkpoints" / "step0000002-tokens256.ckpt"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 3])  # truncated mid-write
    with pytest.warns(ReanalysisWarning, match="step0000002"):
        (report,) = analyze(_cfg(run_copy))
    assert report.measured == [0, 1, 4]
    assert report.failed == [str(bad)]
    assert sorted(read_rows(report.table)["step"].unique()) == [0, 1, 4]


def test_rerun_skips_measured_checkpoints_unless_forced(run_copy: Path) -> None:
    (first,) = analyze(_cfg(run_copy, steps=[0, 4]))
    assert first.measured == [0, 4]
    (second,) = analyze(_cfg(run_copy))
    assert second.measured == [1, 2] and second.skipped == [0, 4]
    n_rows = len(read_rows(second.table))
    (forced,) = analyze(_cfg(run_copy, force=True))
    assert forced.measured == [0, 1, 2, 4] and forced.skipped == []
    table = read_rows(forced.table)
    assert len(table) == n_rows  # replaced, not duplicated
    assert not table.duplicated(["step", "layer", "head", "metric"]).any()


def test_steps_log_list_and_missing_step(run_copy: Path) -> None:
    (log,) = analyze(_cfg(run_copy, steps="log", out_dir=str(run_copy / "a")))
    assert log.measured == [0, 1, 2, 4]  # all are 0 or powers of two
    with pytest.warns(ReanalysisWarning, match=r"no checkpoint for steps \[3\]"):
        (some,) = analyze(_cfg(run_copy, steps=[1, 3], out_dir=str(run_copy / "b")))
    assert some.measured == [1]
    assert some.table == run_copy / "b" / "reanalysis.parquet"


def test_checkpoint_target_groups_and_metric_overrides(run_copy: Path) -> None:
    last = run_copy / "checkpoints" / "last.ckpt"
    (report,) = analyze(_cfg(last, groups=["sinks"], metrics={"eps": 0.5}))
    assert report.measured == [4]
    rows = read_rows(report.table)
    assert set(rows["checkpoint"]) == {"step0000004-tokens512.ckpt"}
    assert rows["metric"].str.startswith("sink/").all()
    (again,) = analyze(_cfg(last))
    assert again.measured == [] and again.skipped == [4]
