"""Config validation needs no Lightning: the validation code imports without it, and the
command line prints its one-line error before Lightning is ever imported."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_run_config_does_not_import_lightning() -> None:
    code = (
        "import sys; import sinklab.training.run_config, sinklab.training.config, sinklab.train; "
        "assert 'lightning' not in sys.modules, 'lightning was imported'; "
        "assert 'pytorch_lightning' not in sys.modules"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]


def test_cli_type_error_is_one_line_before_lightning(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    # Fail loudly should anything import Lightning before the error is printed.
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "lightning.py").write_text("raise ImportError('lightning imported before validation')")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(guard), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sinklab.train",
            "optim.lr=abc",
            f"hydra.run.dir={run_dir}",
            f"paths.output_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.splitlines() == ["error: optim.lr: must be a number, got 'abc'"]
    assert not run_dir.exists()
