"""The configuration both contenders share: composed from the real Hydra config, never retyped.

The Lightning side runs `sinklab.training.run.train` on this config; the plain loop reads the
same model dict, optimiser settings and data module from it. Composing through Hydra (as the
training tests do) means a change to `conf/` changes what is benchmarked, so the figures keep
describing the default recipe.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir

from sinklab.configs import CONF_DIR, compose_section
from sinklab.training.config import OptimConfig
from sinklab.training.datamodule import SinkDataModule
from sinklab.training.run import RunConfig, validate_config


def bench_overrides(
    out_dir: Path,
    *,
    threads: int,
    device: str = "cpu",
    compile: bool = False,
    logger: str = "wandb",
    extra: list[str] | None = None,
) -> list[str]:
    """Overrides that point the default recipe at a scratch folder and pin the threads.

    W&B is forced offline (a benchmark must never touch the network); the progress bar is off
    so the table stays readable (its per-step cost is microseconds against a ~0.2 s step).
    """
    overrides = [
        f"paths.output_dir={out_dir}",
        f"trainer.threads={threads}",
        "trainer.progress_bar=false",
        f"logger={logger}",
    ]
    if logger == "wandb":
        overrides.append("logger.mode=offline")
    if device == "cuda":
        overrides.append("trainer=gpu")  # bf16-mixed on one GPU
    overrides.append(f"trainer.compile={str(compile).lower()}")
    return overrides + list(extra or [])


def preset(name: str) -> dict[str, Any]:
    """The non-null keys of model preset `name` (conf/model/<name>.yaml over its base.yaml),
    to lay over a recipe's model dict: null sizes stay derived, the vocabulary comes from the
    data."""
    values = compose_section("model", name)
    return {k: v for k, v in values.items() if v is not None and k != "vocab_size"}


def compose_run(overrides: list[str]) -> RunConfig:
    """Compose `conf/train.yaml` with `overrides` and validate it exactly as `sinklab-train` does."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    return validate_config(cfg)


@dataclass
class Recipe:
    """Everything the plain loop needs to train what the Lightning path trains."""

    run: RunConfig
    datamodule: SinkDataModule
    model: dict[str, Any]  # full ModelConfig fields, vocab size filled in from the data
    device: torch.device

    @property
    def optim(self) -> OptimConfig:
        return self.run.optim

    @property
    def tokens_per_step(self) -> int:
        """Input tokens per optimizer step on one rank (every position costs compute)."""
        return (
            self.run.data.batch_size
            * self.run.data.seq_len
            * self.run.trainer.accumulate_grad_batches
        )

    @property
    def precision(self) -> str:
        return str(self.run.trainer.precision)


def build_recipe(run: RunConfig, device: str = "cpu") -> Recipe:
    """Prepare the data once (start-up is not what is benchmarked) and fill in the vocabulary."""
    datamodule = SinkDataModule(run.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    model = {**run.model, "vocab_size": run.model.get("vocab_size") or datamodule.vocab_size}
    return Recipe(run=run, datamodule=datamodule, model=model, device=torch.device(device))
