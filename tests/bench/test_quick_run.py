"""`make bench ARGS=--quick` end to end, shrunk further (about 10 s): every section runs and
the JSON and markdown land in the output folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sinklab.bench.cli import main


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
    assert 0 < rec["mfu"][0]["mfu"] < 1.5
    assert rec["kernels"][0]["flash"]  # rope softmax reaches the fused CPU flash kernel
    record = json.loads((tmp_path / "latest.json").read_text())
    assert record["costs"]["reanalysis"]["count"] == 2
    assert "Ratio a/b" in (tmp_path / "latest.md").read_text()
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
