"""sinklab-analyze re-measures the W8A8 evaluation of a run with the run's saved windows and
the callback's own function, so its rows equal the callback's bit for bit, at the same steps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sinklab.analysis.records import read_rows
from sinklab.errors import ConfigError
from sinklab.reanalysis.config import from_mapping
from sinklab.reanalysis.runner import analyze
from tests.reanalysis.helpers import train_tiny
from tests.training.test_quant_callback import QUANT  # the same tiny quant schedule


def _quant(rows):  # noqa: ANN001, ANN202
    q = rows[rows["metric"].str.startswith("quant/")]
    return q.sort_values(["step", "metric"]).reset_index(drop=True)


def test_reanalysis_reproduces_the_callbacks_quant_rows(tmp_path: Path) -> None:
    run_dir = train_tiny(tmp_path / "run", QUANT)
    logged = _quant(read_rows(run_dir / "metrics" / "probes.parquet"))
    (report,) = analyze(from_mapping({"target": str(run_dir), "progress": False}))
    again = _quant(read_rows(report.table))
    assert sorted(again["step"].unique()) == [0, 2, 4]  # the callback's steps, not 1
    assert again["metric"].tolist() == logged["metric"].tolist()
    np.testing.assert_array_equal(again["value"].to_numpy(), logged["value"].to_numpy())
    assert again["checkpoint"].tolist() == logged["checkpoint"].tolist()

    # quant.enabled=true: every checkpoint, step 1 included, with one mode asked for
    out = tmp_path / "again"
    cfg = {"target": str(run_dir), "progress": False, "out_dir": str(out)}
    cfg["quant"] = {"enabled": True, "modes": ["per_token_dynamic"]}
    (report,) = analyze(from_mapping(cfg))
    rows = _quant(read_rows(report.table))
    assert sorted(rows["step"].unique()) == [0, 1, 2, 4]
    assert "quant/ppl/per_tensor_static" not in set(rows["metric"])
    at4 = rows[rows["step"] == 4].set_index("metric")["value"]
    logged4 = logged[logged["step"] == 4].set_index("metric")["value"]
    for name in ("quant/ppl/fp", "quant/ppl/per_token_dynamic"):
        assert at4[name] == logged4[name]


def test_bad_quant_key_is_one_line_error() -> None:
    # the flat key of older command lines names the nested one
    for given in ({"modes": ["per_row"]}, {"quantizer": {"modes": ["per_row"]}}):
        with pytest.raises(ConfigError) as err:
            from_mapping({"target": "smollm2", "quant": given})
        assert err.value.key == "quant.quantizer.modes"
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        from_mapping({"target": "smollm2", "quant": {"prefix": {"colour": 1}}})
    assert str(err.value).startswith("quant.prefix.colour: unknown key; known keys: bos_id,")
