"""Compose the real Hydra config and shrink it, as lightning-hydra-template's tests do."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def tiny_overrides(tmp: Path, steps: int = 4) -> list[str]:
    """A model and data small enough that a run takes seconds on one CPU thread."""
    return [
        f"paths.output_dir={tmp}",
        f"paths.cache_dir={tmp / 'cache'}",
        "data=synthetic",
        "data.synthetic.kind=zipf",
        "data.synthetic.vocab_size=64",
        "data.bos=every_window",
        "data.seq_len=32",
        "data.batch_size=4",
        "data.val_batches=2",
        "data.probe.n_windows=8",
        "data.probe.seq_len=16",
        "model.d_model=32",
        "model.n_layers=2",
        "model.n_heads=4",
        "model.max_seq_len=64",
        f"trainer.max_steps={steps}",
        "trainer.val_every_n_steps=2",
        "trainer.log_every_n_steps=1",
        "trainer.progress_bar=false",
        "optim.warmup_steps=2",
        "logger=csv",
        "callbacks.checkpoint.every=4",
        "callbacks.probe.batch_size=4",
    ]


def compose_train(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> DictConfig:
    return compose_train(tiny_overrides(tmp_path))
