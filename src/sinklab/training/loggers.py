"""Loggers: W&B (offline unless a key or WANDB_MODE says otherwise), CSV, or none.

W&B pitfalls handled here: `log_model` stays off (it raises with offline runs), every run is
finished in `finish_loggers` (called from a `finally`, so each job of a multirun gets its own
run), and values are only logged at the trainer's global step. The run id is kept in the run
folder (`wandb_id.txt`), so a resumed or requeued run continues the same W&B run.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger

from sinklab.atomic import atomic_write
from sinklab.runs.layout import RunLayout
from sinklab.training.config import LoggerConfig
from sinklab.training.csv_log import SafeCSVLogger

__all__ = ["LoggerConfig", "build_loggers", "finish_loggers", "wandb_mode", "wandb_run_id"]


def wandb_run_id(run_dir: Path, write: bool = True) -> str:
    """The run folder's W&B id: read from `wandb_id.txt`, or made up and saved there (by rank 0
    only: `write=False` on the other ranks, whose loggers never open a W&B run)."""
    path = RunLayout(run_dir).wandb_id
    if path.is_file():
        saved = path.read_text().strip()
        if saved:
            return saved
    run_id = uuid.uuid4().hex[:12]  # W&B ids: lowercase letters and digits
    if write:
        atomic_write(path, lambda fh: fh.write(run_id.encode()))
    return run_id


def wandb_mode(cfg: LoggerConfig, environ: dict[str, str] | None = None) -> str:
    """Offline by default; online only when asked or when an API key is present."""
    environ = os.environ if environ is None else environ
    if cfg.mode:
        return cfg.mode
    if environ.get("WANDB_MODE"):
        return environ["WANDB_MODE"]
    return "online" if environ.get("WANDB_API_KEY") else "offline"


def build_loggers(
    cfg: LoggerConfig,
    run_dir: Path,
    group: str,
    name: str,
    config: dict[str, Any],
    resume_step: int = 0,
) -> list[Logger]:
    """The configured loggers; `resume_step` > 0 keeps metrics.csv rows from before that step."""
    loggers: list[Logger] = []
    if cfg.kind == "wandb":
        from lightning.fabric.utilities.rank_zero import rank_zero_only
        from lightning.pytorch.loggers import WandbLogger

        mode = wandb_mode(cfg)
        run_id = wandb_run_id(run_dir, write=getattr(rank_zero_only, "rank", 0) == 0)
        loggers.append(
            WandbLogger(
                id=run_id,
                resume="allow",  # a new id starts a run; a saved one continues it
                project=cfg.project,
                entity=cfg.entity,
                group=cfg.group or group,
                name=cfg.name or name,
                save_dir=str(run_dir),
                offline=mode == "offline",
                mode=mode,
                tags=list(cfg.tags),
                log_model=False,
                config=config,
            )
        )
    if cfg.kind == "csv" or (cfg.kind == "wandb" and cfg.csv):
        loggers.append(SafeCSVLogger(save_dir=str(run_dir), resume_step=resume_step))
    return loggers


def finish_loggers() -> None:
    """Close the W&B run, if one is open, so the next job of a multirun starts its own."""
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb is a dependency
        return
    if wandb.run is not None:
        wandb.finish()
