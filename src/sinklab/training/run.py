"""One training run, from a composed config to a finished run folder.

`validate_config` checks every section before anything is built; `train` then builds the data,
model, loggers and callbacks, fits, exports the weights and writes a summary. The Hydra entry
point (`sinklab.train`) is a thin wrapper around these two.
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from sinklab.analysis import MetricsConfig
from sinklab.configs import from_mapping
from sinklab.data import DataConfig, ProbeSet, load_probe_set, save_probe_set
from sinklab.errors import ConfigError, check
from sinklab.model import ModelConfig
from sinklab.runs.checkpoints import (
    UnreadableCheckpointError,
    UnsafeCheckpointError,
    export_safetensors,
    load_checkpoint_state,
)
from sinklab.training.callbacks import LogSpacedCheckpoint, ProbeCallback, ThroughputMonitor
from sinklab.training.config import CheckpointConfig, OptimConfig, ProbeConfig, TrainerConfig
from sinklab.training.datamodule import SinkDataModule
from sinklab.training.loggers import LoggerConfig, build_loggers, finish_loggers
from sinklab.training.module import SinkLabModule
from sinklab.training.schedule import log_spaced_steps

TOP_LEVEL_KEYS = {
    "paths",
    "model",
    "data",
    "optim",
    "trainer",
    "logger",
    "callbacks",
    "seed",
    "run_name",
    "experiment_name",
    "ckpt_path",
    "tags",
    "notes",
}
# Keys that do not change what is trained, left out of the config hash.
UNHASHED = ("paths", "logger", "ckpt_path", "run_name", "tags", "notes")


@dataclass
class RunConfig:
    """The validated form of a composed Hydra config."""

    model: dict[str, Any]  # ModelConfig fields; vocab_size may be None until the tokenizer exists
    data: DataConfig
    optim: OptimConfig
    trainer: TrainerConfig
    logger: LoggerConfig
    checkpoint: CheckpointConfig
    probe: ProbeConfig
    metrics: MetricsConfig
    seed: int
    experiment_name: str
    run_name: str | None
    ckpt_path: str | None
    resolved: dict[str, Any] = field(default_factory=dict)

    @property
    def config_hash(self) -> str:
        hashed = {k: v for k, v in self.resolved.items() if k not in UNHASHED}
        return hashlib.sha256(json.dumps(hashed, sort_keys=True, default=str).encode()).hexdigest()[
            :12
        ]


def validate_config(cfg: DictConfig) -> RunConfig:
    """Check every section; raise ConfigError (one line, naming the key) on the first problem."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    for key in resolved:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(
                str(key), f"unknown top-level key; known keys: {', '.join(sorted(TOP_LEVEL_KEYS))}"
            )
    model = dict(resolved["model"])
    # Validate the architecture now; vocab_size may still be unknown (taken from the tokenizer).
    ModelConfig.from_dict({**model, "vocab_size": model.get("vocab_size") or 1})
    data = DataConfig.from_dict(resolved["data"])
    optim = from_mapping(OptimConfig, resolved.get("optim"), "optim")
    trainer = from_mapping(TrainerConfig, resolved.get("trainer"), "trainer")
    logger = from_mapping(LoggerConfig, resolved.get("logger"), "logger")
    callbacks = dict(resolved.get("callbacks") or {})
    for key in callbacks:
        check(
            key in ("checkpoint", "probe"),
            f"callbacks.{key}",
            "unknown callback; known: checkpoint, probe",
        )
    checkpoint = from_mapping(CheckpointConfig, callbacks.get("checkpoint"), "callbacks.checkpoint")
    probe = from_mapping(ProbeConfig, callbacks.get("probe"), "callbacks.probe")
    metrics = from_mapping(MetricsConfig, probe.metrics, "callbacks.probe.metrics")
    positions = data.seq_len + int(model.get("n_sink_tokens") or 0)
    check(
        positions <= int(model["max_seq_len"]),
        "data.seq_len",
        f"seq_len={data.seq_len} (+{positions - data.seq_len} sink tokens) is above model.max_seq_len={model['max_seq_len']}",
    )
    check(
        data.probe.seq_len <= int(model["max_seq_len"]),
        "data.probe.seq_len",
        f"{data.probe.seq_len} is above model.max_seq_len={model['max_seq_len']}",
    )
    ckpt_path = resolved.get("ckpt_path")
    if ckpt_path is not None:
        check(Path(ckpt_path).is_file(), "ckpt_path", f"no checkpoint file at {ckpt_path}")
    return RunConfig(
        model=model,
        data=data,
        optim=optim,
        trainer=trainer,
        logger=logger,
        checkpoint=checkpoint,
        probe=probe,
        metrics=metrics,
        seed=int(resolved.get("seed", 0)),
        experiment_name=str(resolved.get("experiment_name") or "default"),
        run_name=resolved.get("run_name"),
        ckpt_path=ckpt_path,
        resolved=resolved,
    )


def read_resume_checkpoint(ckpt_path: str) -> tuple[dict[str, Any], int]:
    """The model config a checkpoint was trained with and its step, or a one-line ConfigError
    when it is unsafe (needs code unpickled), unreadable, or not a sinklab checkpoint.

    Lightning loads it again in `trainer.fit(..., weights_only=True)`; this first look runs
    before anything is built or written.
    """
    try:
        state = load_checkpoint_state(ckpt_path, mmap=True)
    except (UnsafeCheckpointError, UnreadableCheckpointError) as err:
        raise ConfigError("ckpt_path", str(err)) from None
    saved = state.get("hyper_parameters", {}).get("model") if isinstance(state, dict) else None
    if not isinstance(saved, dict) or not saved:
        raise ConfigError(
            "ckpt_path", f"{ckpt_path} is not a sinklab training checkpoint (no model config)"
        )
    return saved, int(state.get("global_step", 0))


def compare_model_configs(saved: dict[str, Any], model: dict[str, Any]) -> None:
    """Refuse to resume with a different architecture, naming every key that differs."""
    differ = sorted(k for k in set(saved) | set(model) if saved.get(k) != model.get(k))
    if differ:
        detail = ", ".join(
            f"model.{k} (checkpoint {saved.get(k)!r}, config {model.get(k)!r})" for k in differ
        )
        raise ConfigError(
            "ckpt_path", f"checkpoint was trained with a different model config: {detail}"
        )


def check_resume_compatible(ckpt_path: str, model: dict[str, Any]) -> int:
    """Both checks at once; returns the step the checkpoint resumes from."""
    saved, step = read_resume_checkpoint(ckpt_path)
    compare_model_configs(saved, model)
    return step


@dataclass
class RunResult:
    run_dir: Path
    final_train_loss: float | None
    final_val_loss: float | None
    checkpoints: list[Path]
    fit_seconds: float
    probe_seconds: float
    checkpoint_seconds: float
    tokens_seen: int
    tokens_per_s: float | None
    probe_history: dict[int, dict[str, float]]

    def summary(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "final_train_loss": self.final_train_loss,
            "final_val_loss": self.final_val_loss,
            "tokens_seen": self.tokens_seen,
            "tokens_per_s": self.tokens_per_s,
            "fit_seconds": round(self.fit_seconds, 2),
            "probe_seconds": round(self.probe_seconds, 2),
            "probe_share_pct": round(100 * self.probe_seconds / self.fit_seconds, 2)
            if self.fit_seconds
            else None,
            "checkpoint_seconds": round(self.checkpoint_seconds, 2),
            "n_checkpoints": len(self.checkpoints),
        }


def prepare_data(run: RunConfig, run_dir: Path) -> tuple[SinkDataModule, ProbeSet]:
    """Build corpus, tokenizer and token cache, and the run's fixed probe set (reused on resume)."""
    datamodule = SinkDataModule(run.data, run_dir=run_dir)
    datamodule.prepare_data()
    datamodule.setup("fit")
    if (run_dir / "probe" / "probe_set.npz").exists():
        probe_set = load_probe_set(run_dir)
    else:
        probe_set = datamodule.probe_set()
        save_probe_set(probe_set, run_dir)
    return datamodule, probe_set


def quiet_lightning_logs() -> None:
    """Route Lightning's messages through the root logger once (Hydra already prints and files
    them), and drop its advertising and hardware banner."""
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    # Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates, once per run: not ours to fix.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


def train(run: RunConfig, run_dir: Path, group: str = "default", name: str = "run") -> RunResult:
    """Fit one model; everything the run produces lands in `run_dir`."""
    quiet_lightning_logs()
    L.seed_everything(run.seed, workers=True, verbose=False)
    if run.trainer.threads:
        torch.set_num_threads(run.trainer.threads)
    saved_model, resume_step = read_resume_checkpoint(run.ckpt_path) if run.ckpt_path else ({}, 0)
    datamodule, probe_set = prepare_data(run, run_dir)
    model_dict = {**run.model, "vocab_size": run.model.get("vocab_size") or datamodule.vocab_size}
    if run.ckpt_path:
        compare_model_configs(saved_model, model_dict)
    world = int(run.trainer.num_nodes) * _device_count(run.trainer)
    tokens_per_step = (
        run.data.batch_size * run.data.seq_len * run.trainer.accumulate_grad_batches * world
    )
    module = SinkLabModule(
        model=model_dict,
        optim=_plain(run.optim),
        max_steps=run.trainer.max_steps,
        tokens_per_step=tokens_per_step,
        on_nonfinite=run.trainer.on_nonfinite,
        compile=run.trainer.compile,
    )
    (run_dir / "model_config.json").write_text(json.dumps(model_dict, indent=2))

    ckpt_dir = run_dir / "checkpoints"
    callbacks: list[L.Callback] = [ThroughputMonitor()]
    checkpoint_steps: set[int] = set()
    if run.checkpoint.enabled:
        checkpoint_steps = set(
            log_spaced_steps(
                run.trainer.max_steps, run.checkpoint.log_spaced_until, run.checkpoint.every
            )
        )
    # Probe before checkpoint: at a step with both, the probe rows are written first, so every
    # checkpoint on disk implies its probe rows are too (what a resume relies on).
    if run.probe.enabled:
        callbacks.append(
            ProbeCallback(
                run_dir,
                probe_set,
                run.probe,
                run.metrics,
                run.trainer.max_steps,
                run_id=run_dir.name,
                config_hash=run.config_hash,
                checkpoint_steps=checkpoint_steps,
            )
        )
    if run.checkpoint.enabled:
        callbacks.append(LogSpacedCheckpoint(ckpt_dir, run.checkpoint, run.trainer.max_steps))
    loggers = build_loggers(
        run.logger, run_dir, group=group, name=name, config=run.resolved, resume_step=resume_step
    )
    trainer = L.Trainer(
        accelerator=run.trainer.accelerator,
        devices=run.trainer.devices,
        num_nodes=run.trainer.num_nodes,
        strategy=run.trainer.strategy,
        precision=run.trainer.precision,
        max_steps=run.trainer.max_steps,
        accumulate_grad_batches=run.trainer.accumulate_grad_batches,
        val_check_interval=run.trainer.val_every_n_steps * run.trainer.accumulate_grad_batches,
        check_val_every_n_epoch=None,
        limit_val_batches=run.data.val_batches,
        num_sanity_val_steps=0,
        log_every_n_steps=run.trainer.log_every_n_steps,
        deterministic=run.trainer.deterministic,
        enable_checkpointing=False,  # LogSpacedCheckpoint does it
        enable_progress_bar=run.trainer.progress_bar,
        enable_model_summary=False,
        logger=loggers or False,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
    )
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=run.ckpt_path, weights_only=True)
    finally:
        finish_loggers()
    return _finish(run_dir, trainer, module, callbacks)


def _finish(
    run_dir: Path, trainer: L.Trainer, module: SinkLabModule, callbacks: list[L.Callback]
) -> RunResult:
    throughput = next(c for c in callbacks if isinstance(c, ThroughputMonitor))
    ckpt = next((c for c in callbacks if isinstance(c, LogSpacedCheckpoint)), None)
    probe = next((c for c in callbacks if isinstance(c, ProbeCallback)), None)
    if trainer.is_global_zero and (ckpt is None or ckpt.cfg.export_safetensors):
        export_safetensors(
            module.model, run_dir / "model.safetensors", {"step": str(trainer.global_step)}
        )
    metrics = trainer.callback_metrics
    result = RunResult(
        run_dir=run_dir,
        final_train_loss=_float(metrics.get("train/loss")),
        final_val_loss=_float(metrics.get("val/loss")),
        checkpoints=list(ckpt.saved) if ckpt else [],
        fit_seconds=throughput.fit_seconds,
        probe_seconds=probe.seconds if probe else 0.0,
        checkpoint_seconds=ckpt.seconds if ckpt else 0.0,
        tokens_seen=module.tokens_seen,
        tokens_per_s=throughput.last_tokens_per_s,
        probe_history=probe.history if probe else {},
    )
    if trainer.is_global_zero:
        (run_dir / "summary.json").write_text(json.dumps(result.summary(), indent=2))
    return result


def _device_count(trainer: TrainerConfig) -> int:
    devices = trainer.devices
    if isinstance(devices, int) and devices > 0:
        return devices
    if isinstance(devices, (list, tuple)):
        return len(devices)
    if trainer.accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available():
        return torch.cuda.device_count()
    return 1


def _plain(obj: Any) -> dict[str, Any]:
    from dataclasses import asdict

    out = asdict(obj)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
