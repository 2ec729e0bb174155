"""The shipped `debug` presets (conf/debug/): tiny runs through the real command line, overfit
really drives the loss to about zero, profile prints Lightning's profiler report."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from sinklab.errors import ConfigError
from sinklab.runs.schedule import log_spaced_steps
from sinklab.training.run import train
from sinklab.training.run_config import validate_config
from tests.training.conftest import compose_train, tiny_overrides


def _paths(tmp: Path) -> list[str]:
    return [f"paths.output_dir={tmp}", f"paths.cache_dir={tmp / 'cache'}"]


def test_debug_tiny_runs_through_the_cli(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "WANDB_MODE"}  # W&B must not be asked
    proc = subprocess.run(
        [sys.executable, "-m", "sinklab.train", "debug=tiny", *_paths(tmp_path)]
        + ["trainer.threads=1", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env={**env, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sinklab run finished" in proc.stdout
    assert pd.read_parquet(run_dir / "metrics" / "probes.parquet")["step"].max() == 4
    assert "train/loss" in pd.read_csv(run_dir / "csv" / "metrics.csv").columns  # logger=csv
    assert not (run_dir / "wandb").exists()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()


def test_debug_overfit_drives_the_training_loss_to_about_zero(tmp_path: Path) -> None:
    """The preset's task has no irreducible loss: from 3.58 at step 0 (under ln 65 = 4.17, as
    tied embeddings already favour repeating the input token) the loss must fall below 0.05
    in its 150 steps (0.0047 measured; 0.25 at step 50, 0.007 at step 100)."""
    run = validate_config(compose_train(["debug=overfit", *_paths(tmp_path)]))
    assert (run.data.synthetic.kind, run.data.min_context) == ("repeat", 1)
    result = train(run, tmp_path / "run")
    losses = pd.read_csv(tmp_path / "run" / "csv" / "metrics.csv")["train/loss"].dropna()
    assert losses.iloc[0] > 3.0
    assert result.final_train_loss is not None and result.final_train_loss < 0.05


def test_debug_profile_thins_probes_and_turns_the_profiler_on(tmp_path: Path) -> None:
    run = validate_config(compose_train(["debug=profile", *_paths(tmp_path)]))
    assert run.trainer.profiler == "simple" and run.trainer.max_steps == 100
    assert run.logger.kind == "csv"
    steps = log_spaced_steps(100, run.probe.log_spaced_until, run.probe.every)
    assert sorted(steps) == [0, 50, 100]
    assert run.model["n_layers"] == 2  # the default recipe's model, not a debug one


def test_the_profiler_report_is_logged_once_when_fit_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Through the root logger (Hydra prints it), not also through the console handler that
    the `lightning` package installs on import (it printed the report a second time)."""
    run = validate_config(compose_train(tiny_overrides(tmp_path) + ["trainer.profiler=simple"]))
    with caplog.at_level(logging.INFO, logger="lightning.pytorch.profilers"):
        train(run, tmp_path / "run")
    reports = [r.getMessage() for r in caplog.records if "Profiler Report" in r.getMessage()]
    assert len(reports) == 1
    assert "run_training_batch" in reports[0] and "optimizer_step" in reports[0]
    assert "Profiler Report" not in capfd.readouterr().err


@pytest.mark.parametrize("value", ["pytorch", "true"])
def test_an_unknown_profiler_is_one_line_naming_the_choices(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(compose_train(tiny_overrides(tmp_path) + [f"trainer.profiler={value}"]))
    message = str(err.value)
    assert message.startswith("trainer.profiler") and "simple" in message and "advanced" in message
    assert "\n" not in message
