"""Every plotting and sweep script answers --help cleanly: its docstring as written (no
example line joined to the next by a stray backslash), no line past 100 columns."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ("plot_emergence", "plot_streaming", "plot_funnelling", "compare_sweep", "sweep_summary")


def _source_docstring(path: Path) -> list[str]:
    """The module docstring's lines as they stand in the file, `\\\\` read as one backslash."""
    text = path.read_text()
    body = re.match(r'\s*"""(.*?)"""', text, re.S)
    assert body, f"{path.name} has no module docstring"
    return [line.replace("\\\\", "\\").rstrip() for line in body.group(1).splitlines()]


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_is_the_docstring_as_written(name: str) -> None:
    script = ROOT / "scripts" / f"{name}.py"
    done = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and not done.stderr, done.stderr
    shown = done.stdout.splitlines()
    missing = [line for line in _source_docstring(script) if line.strip() and line not in shown]
    assert not missing, f"docstring lines not shown as written: {missing}"
    too_long = [line for line in shown if len(line) > 100]
    assert not too_long, too_long


def test_plot_funnelling_writes_into_the_run_folder(tmp_path: Path) -> None:
    import pandas as pd

    from sinklab.analysis.records import append_rows
    from tests.reports.test_funnelling import _rows

    run = tmp_path / "run"
    rows = pd.concat([_rows([0.9, 0.8, 0.5, 0.4], [0.1, 0.2, 0.6, 0.7], step=s) for s in (0, 10)])
    append_rows(run / "metrics" / "probes.parquet", rows)
    table = tmp_path / "analysis" / "reanalysis.parquet"
    append_rows(table, rows)
    script = str(ROOT / "scripts" / "plot_funnelling.py")
    done = subprocess.run(
        [sys.executable, script, str(run), str(table)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (run / "figures").iterdir()) == [
        "funnel_by_layer.png",
        "funnel_training_run.png",
    ]
    assert not (tmp_path / "outputs").exists()
    done = subprocess.run(
        [sys.executable, script, str(table)], capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (table.parent / "figures" / "funnel_by_layer.png").is_file()
