"""`sinklab-analyze` re-measures a run with the metric settings it was trained with
(`callbacks.probe.metrics.*` in its saved config), not MetricsConfig's defaults, and a
`metrics=` override on the command line wins key by key (issue 32).

Two tiny runs with the same seed, so the same weights (checked): `trained_run` probed with
the defaults (eps 0.3), `tuned_run` with eps 0.15 and query_start 4. A fresh tiny model's
heads spread attention about evenly, alpha_0 ~ H_16 / 16 = 0.21 on 16-token probe windows,
so Sink_1 is 100 % at eps 0.15 and 0 % at eps 0.3 (eps 0.6 would agree with 0.3 here, and
could not tell the settings apart).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sinklab.analysis import names
from sinklab.analysis.records import read_rows
from sinklab.reanalysis import analyze, from_mapping
from tests.reanalysis.helpers import train_tiny

EPS, START = 0.15, 4
WHERE = ["step", "layer", "head", "metric"]


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    override = f"callbacks.probe.metrics={{eps: {EPS}, query_start: {START}}}"
    return train_tiny(tmp_path_factory.mktemp("tuned") / "run", [override])


def _analyze(run: Path, out: Path, **extra: object) -> pd.DataFrame:
    cfg = from_mapping({"target": str(run), "progress": False, "out_dir": str(out), **extra})
    (report,) = analyze(cfg)
    assert report.measured == [0, 1, 2, 4]
    return _values(read_rows(report.table))


def _values(rows: pd.DataFrame) -> pd.Series:
    """value by (step, layer, head, metric), in one order whatever the table's."""
    return rows.set_index(WHERE)["value"].sort_index()


def _logged(run: Path) -> pd.Series:
    return _values(read_rows(run / "metrics" / "probes.parquet"))


def _sink1(values: pd.Series) -> pd.Series:
    return values[values.index.get_level_values("metric") == names.SINK1]


def test_the_two_runs_share_their_weights(trained_run: Path, tuned_run: Path) -> None:
    """The comparisons below rest on this: only the metric settings differ."""
    ours, theirs = (
        torch.load(r / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        for r in (tuned_run, trained_run)
    )
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


def test_reanalysis_measures_with_the_runs_own_eps_and_query_start(
    trained_run: Path, tuned_run: Path, tmp_path: Path
) -> None:
    again = _analyze(tuned_run, tmp_path / "again")
    logged = _logged(tuned_run)
    # what the callback logged at eps 0.15 / query_start 4, row for row and bit for bit
    pd.testing.assert_index_equal(again.index, logged.index)
    np.testing.assert_array_equal(again.to_numpy(), logged.to_numpy())
    late = again.index.get_level_values("metric").str.endswith("/from_query_start")
    assert set(again.index.get_level_values("metric")[late]) == {
        names.from_query_start(m) for m in names.FROM_QUERY_START
    }
    # and not what the defaults give on the same weights: Sink_1 100 % against 0 %
    ours, defaults = _sink1(again), _sink1(_logged(trained_run))
    pd.testing.assert_index_equal(ours.index, defaults.index)
    assert (ours == 100.0).all() and (defaults == 0.0).all()


def test_a_command_line_override_wins_key_by_key(
    trained_run: Path, tuned_run: Path, tmp_path: Path
) -> None:
    """metrics={eps: 0.3} measures Sink_1 as the default run's callback did; query_start,
    not overridden, stays the run's 4, so the late-query rows are still there (groups=
    switches groups, never thresholds)."""
    again = _analyze(tuned_run, tmp_path / "eps", metrics={"eps": 0.3}, groups=["sinks"])
    pd.testing.assert_series_equal(_sink1(again), _sink1(_logged(trained_run)))
    late_ftm = names.from_query_start(names.FIRST_TOKEN_MASS)  # no threshold: as logged
    mine = again[again.index.get_level_values("metric") == late_ftm]
    logged = _logged(tuned_run)
    assert len(mine) > 0
    pd.testing.assert_series_equal(
        mine, logged[logged.index.get_level_values("metric") == late_ftm]
    )


def test_overriding_every_tuned_key_gives_the_default_runs_rows(
    trained_run: Path, tuned_run: Path, tmp_path: Path
) -> None:
    again = _analyze(tuned_run, tmp_path / "all", metrics={"eps": 0.3, "query_start": 0})
    defaults = _logged(trained_run)
    pd.testing.assert_index_equal(again.index, defaults.index)
    np.testing.assert_array_equal(again.to_numpy(), defaults.to_numpy())
