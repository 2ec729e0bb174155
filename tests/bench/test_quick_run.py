"""`make bench ARGS=--quick` end to end, shrunk further: every section runs and the JSON and
markdown land in the output folder. About 30 s on an idle 2-core machine, the single slowest
test, so it runs in `make test-slow` (and CI); the pieces it joins have unit tests in
tests/bench/test_helpers.py (MFU, peak, summaries) and test_probe_extras.py (cost rows)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sinklab.bench.cli import main


@pytest.mark.slow
def test_quick_bench_writes_table_and_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SINKLAB_OUTPUTS", str(tmp_path))
    rec = main(
        [
            "--quick",
            "--repeats",
            "1",
            "--steps",
            "5",
            "--warmup",
            "1",
            "--mfu-steps",
            "2",
            "--probe-repeats",
            "1",
            "--reanalysis",
            "2",
            "--logger",
            "csv",
            "--out",
            str(tmp_path),
        ]
    )
    assert rec["paths"]["ratio"].median > 0
    row, peak = rec["mfu"][0], rec["peak"]
    # MFU is achieved FLOP/s over the machine's measured peak: by physics in (0, 1], and
    # exactly tokens/s x the FLOP count (hand-checked in tests/model/test_flops.py) / peak
    assert 0 < row["mfu"] <= 1
    assert row["flops_per_token"] > 0 and peak.wall > 0
    assert row["mfu"] == pytest.approx(row["tokens_per_s"] * row["flops_per_token"] / peak.wall)
    assert rec["kernels"][0]["flash"]  # rope softmax reaches the fused CPU flash kernel
    record = json.loads((tmp_path / "latest.json").read_text())
    assert record["costs"]["reanalysis"]["count"] == 2
    markdown = (tmp_path / "latest.md").read_text()
    assert "Ratio a/b" in markdown
    # the optional probe parts: the outlier metrics and one W8A8 evaluation of the recipe
    assert record["costs"]["quant_eval_s"]["median"] > 0 and "one W8A8 evaluation" in markdown
    assert "outliers_in_probes" in record["costs"] and "outlier metrics" in markdown
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
