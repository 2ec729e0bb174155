"""Running sinklab the way a user does: the real CLI in a subprocess (optionally with injected
faults), or `sinklab.train.run` in-process with Hydra's runtime set up as the CLI would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from tests.reliability.faults import DRIVER
from tests.training.conftest import CONF_DIR, tiny_overrides

ROOT = Path(__file__).resolve().parents[2]


def cli_env(faults: str = "") -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "SINKLAB_TEST_FAULTS": faults,
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "OMP_NUM_THREADS": "1",
    }


def cli_args(args: list[str]) -> list[str]:
    return [sys.executable, "-c", DRIVER, *args]


def start_cli(args: list[str], cwd: Path, faults: str = "") -> subprocess.Popen:
    """The real `sinklab-train` (through the fault driver) in the background."""
    return subprocess.Popen(
        cli_args(args),
        cwd=cwd,
        env=cli_env(faults),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(
    args: list[str], cwd: Path, faults: str = "", timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        cli_args(args),
        cwd=cwd,
        env=cli_env(faults),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_line(stderr: str) -> str:
    """The last non-empty stderr line: where `error: ...` must be."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_in_process(
    overrides: list[str], run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str]:
    """`sinklab.train.run` exactly as Hydra calls it (same config, same run folder); returns
    the exit code (0 when it returns) and the last stderr line."""
    from sinklab.train import run

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.override_dirname = "test"
    (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
    HydraConfig.instance().set_config(cfg)
    task = cfg.copy()
    with open_dict(task):
        del task["hydra"]
    capsys.readouterr()
    code = 0
    try:
        run(task)
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    return code, error_line(capsys.readouterr().err)


def tiny(tmp: Path, steps: int = 4) -> list[str]:
    """The training tests' seconds-long config, CSV logging, one thread, deterministic."""
    return tiny_overrides(tmp, steps) + ["trainer.threads=1", "trainer.deterministic=true"]
