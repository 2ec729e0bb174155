"""Tiny real runs for the reanalysis tests: trained in-process in a few seconds, laid out as
Hydra would lay them out (.hydra/config.yaml beside the run), so targets resolve as in real use."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from sinklab.training.run import train, validate_config
from tests.training.conftest import compose_train, tiny_overrides


def train_tiny(run_dir: Path, extra: list[str] | None = None, steps: int = 4) -> Path:
    """Train a 2-layer model for `steps` steps into `run_dir`; checkpoints at 0, 1, 2, 4."""
    cfg = compose_train(
        tiny_overrides(run_dir.parent / f".{run_dir.name}-work", steps=steps) + list(extra or [])
    )
    run_dir.mkdir(parents=True)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    train(validate_config(cfg), run_dir)
    return run_dir
