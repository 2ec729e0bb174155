"""A folder measured only by sinklab-analyze (a hub trajectory) plots like a run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sinklab.errors import ConfigError
from sinklab.reports.figures import run_table
from sinklab.runs.layout import RunLayout


def test_a_folder_with_only_a_reanalysis_table_is_read_through_it(tmp_path: Path) -> None:
    layout = RunLayout(tmp_path)
    with pytest.raises(ConfigError, match="no probes.parquet"):
        run_table(tmp_path)
    path = layout.table("reanalysis")
    path.parent.mkdir(parents=True)
    rows = pd.DataFrame({"step": [0, 1000], "metric": ["sink/sink1_pct"] * 2, "value": [0.0, 40.0]})
    rows.to_parquet(path)
    got = run_table(tmp_path)
    assert got["value"].tolist() == [0.0, 40.0]
