"""Compose the real Hydra config and shrink it, as lightning-hydra-template's tests do."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from sinklab.configs import conf_dir

CONF_DIR = conf_dir()


def tiny_overrides(tmp: Path, steps: int = 4) -> list[str]:
    """A model and data small enough that a run takes seconds on one CPU thread: the shipped
    `debug=tiny` preset (conf/debug/tiny.yaml), with every output and cache under `tmp`."""
    return [
        "debug=tiny",
        f"paths.output_dir={tmp}",
        f"paths.cache_dir={tmp / 'cache'}",
        f"trainer.max_steps={steps}",
    ]


def compose_train(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> DictConfig:
    return compose_train(tiny_overrides(tmp_path))
