"""The bench's data section (issue 30): the process-tree memory reader against a child of
known size, the rendered verdicts, and (slow) the whole section on two tiny corpora."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sinklab.bench import data_prep


def test_tree_rss_counts_a_child_that_holds_200_mb() -> None:
    code = "b = bytearray(200_000_000); import time; time.sleep(30)"
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        base = data_prep.tree_rss(os.getpid())
        deadline = time.time() + 20
        while data_prep.tree_rss(os.getpid()) - base < 190e6 and time.time() < deadline:
            time.sleep(0.1)
        assert data_prep.tree_rss(os.getpid()) - base >= 190e6
    finally:
        child.kill()
        child.wait()


def _record(ratio: float, peak_gb: float, loader: float, start: float) -> dict:
    rows = [
        {
            "mb": 100,
            "tokens": 25_000_000,
            "seconds": 20.0,
            "tokens_per_s": 1.25e6,
            "peak_rss": 0.9e9,
            "second_start_s": 3.0,
            "second_start_build_s": 0.2,
        },
        {
            "mb": 1000,
            "tokens": 250_000_000,
            "seconds": 200.0,
            "tokens_per_s": 1.25e6,
            "peak_rss": peak_gb * 1e9,
            "second_start_s": 3.1,
            "second_start_build_s": start,
        },
    ]
    return {
        "workers": 2,
        "rows": rows,
        "raw_encode_tokens_per_s": 1.25e6 / ratio,
        "throughput_ratio": ratio,
        "rss_growth": peak_gb / 0.9,
        "loader_tokens_per_s": loader,
        "targets": data_prep.TARGETS,
    }


def test_render_states_each_figure_against_its_target() -> None:
    good = "\n".join(data_prep.render(_record(0.9, 1.0, 20e6, 0.3)))
    assert good.count("| met |") == 4 and "NOT met" not in good
    assert "90%" in good and "20.0M tokens/s" in good and "1.00 GB, x1.11" in good
    bad = "\n".join(data_prep.render(_record(0.5, 1.6, 5e6, 6.0)))
    assert bad.count("NOT met") == 4


@pytest.mark.slow
def test_the_section_runs_on_two_tiny_corpora(tmp_path: Path) -> None:
    rec = data_prep.data_section([0.5, 2.0], tmp_path, workers=2)
    assert [r["mb"] for r in rec["rows"]] == [0.5, 2.0]
    assert rec["rows"][1]["tokens"] > 3 * rec["rows"][0]["tokens"] > 0
    assert rec["raw_encode_tokens_per_s"] > 0 and rec["loader_tokens_per_s"] > 0
    assert all(r["peak_rss"] > 50e6 for r in rec["rows"])
    assert "## Data at scale" in "\n".join(data_prep.render(rec))
