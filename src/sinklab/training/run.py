"""One training run, from a composed config to a finished run folder.

`validate_config` (in the Lightning-free `run_config`, re-exported here) checks every section
before anything is built; `train` then builds the data, model, loggers and callbacks, fits,
exports the weights and writes a summary. The Hydra entry point (`sinklab.train`) is a thin
wrapper around these two.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only

from sinklab.atomic import atomic_write
from sinklab.data import ProbeSet, load_probe_set, save_probe_set
from sinklab.data.budget import epochs_seen
from sinklab.errors import EXIT_INTERRUPTED, EXIT_NONFINITE, EXIT_SKIPPED, ConfigError
from sinklab.runs.checkpoints import (
    UnreadableCheckpointError,
    UnsafeCheckpointError,
    export_safetensors,
    is_full_state,
    load_checkpoint_state,
    resume_checkpoint,
)
from sinklab.runs.layout import RunLayout
from sinklab.runs.schedule import log_spaced_steps
from sinklab.training.callbacks import LogSpacedCheckpoint, ProbeCallback, ThroughputMonitor
from sinklab.training.callbacks.probes import probe_evaluations, thinning_hint
from sinklab.training.config import TrainerConfig
from sinklab.training.datamodule import SinkDataModule
from sinklab.training.full_params import rank0_model
from sinklab.training.loggers import build_loggers, finish_loggers
from sinklab.training.module import NonFiniteLossError, SinkLabModule
from sinklab.training.progress import progress_bar
from sinklab.training.run_config import TOP_LEVEL_KEYS, UNHASHED, RunConfig, validate_config

__all__ = [
    "TOP_LEVEL_KEYS",
    "UNHASHED",
    "RunConfig",
    "RunInterrupted",
    "RunResult",
    "check_resume_compatible",
    "train",
    "validate_config",
]


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
    if not is_full_state(state):
        raise ConfigError(
            "ckpt_path",
            f"{ckpt_path} holds weights only (a log-spaced checkpoint, for analysis); "
            "resume from the run's checkpoints/last.ckpt, which holds the full training state",
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


class RunInterrupted(Exception):
    """Ctrl-C (SIGINT) stopped the fit; its summary.json is written. Lightning turns the
    KeyboardInterrupt into `sys.exit(1)`; this names it, so the entry point exits with 130."""


# How a run ended: summary.json's `status`, and the exit code sinklab-train gives for it.
FINISHED, SKIPPED_TOO_MANY, STOPPED, INTERRUPTED, FAILED = (
    "finished",
    "skipped_too_many",
    "stopped_nonfinite",
    "interrupted",
    "failed",
)
EXIT_CODES = {
    FINISHED: 0,
    SKIPPED_TOO_MANY: EXIT_SKIPPED,
    STOPPED: EXIT_NONFINITE,
    INTERRUPTED: EXIT_INTERRUPTED,
    FAILED: 1,
}


@dataclass
class Outcome:
    """Why fit returned: `status` (one of the five above) and one line saying why."""

    status: str = FINISHED
    reason: str = ""


@dataclass
class RunResult:
    run_dir: Path
    final_train_loss: float | None
    final_val_loss: float | None
    checkpoints: list[Path]
    fit_seconds: float
    probe_seconds: float  # probes and streaming evaluations, W8A8 evaluations aside
    checkpoint_seconds: float
    tokens_seen: int
    tokens_per_s: float | None
    probe_history: dict[int, dict[str, float]]
    quant_seconds: float = 0.0  # the W8A8 evaluations, on their own (sparser) schedule
    intervention_seconds: float = 0.0  # the interventions, on the same sparse schedule
    epochs_seen: float | None = None  # passes over the training split (None: synthetic data)
    # everything the probe callback took, W8A8 and interventions included: the figure its
    # `probes N s, of which ...` log line gives
    probe_total_seconds: float = 0.0
    status: str = FINISHED
    reason: str = ""
    steps_completed: int = 0
    last_good_step: int = 0  # steps completed when the last update was applied
    last_checkpoint: Path | None = None  # the full-state checkpoint a resume continues from
    last_checkpoint_step: int | None = None  # the step it holds
    skipped_batches: int = 0
    resumed_from: list[int] = field(default_factory=list)  # the steps each resume started at
    # metric -> (first step, value, last step, value): Sink_1 and kin from the probe table, the
    # variant's own figure (slot mass of sink tokens / kv bias, the gate of gated attention)
    headline: dict[str, tuple[int, float, int, float]] = field(default_factory=dict)

    @property
    def skipped_share(self) -> float:
        return self.skipped_batches / self.steps_completed if self.steps_completed else 0.0

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    def summary(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "status": self.status,
            "reason": self.reason,
            "exit_code": self.exit_code,
            "steps_completed": self.steps_completed,
            "last_good_step": self.last_good_step,
            "last_checkpoint": str(self.last_checkpoint) if self.last_checkpoint else None,
            "last_checkpoint_step": self.last_checkpoint_step,
            "skipped_batches": self.skipped_batches,
            "skipped_share": round(self.skipped_share, 4),
            "resumed_from": self.resumed_from,
            "final_train_loss": self.final_train_loss,
            "final_val_loss": self.final_val_loss,
            "tokens_seen": self.tokens_seen,
            "tokens_per_s": self.tokens_per_s,
            "epochs_seen": self.epochs_seen,
            "fit_seconds": round(self.fit_seconds, 2),
            "probe_total_seconds": round(self.probe_total_seconds, 2),
            "probe_seconds": round(self.probe_seconds, 2),
            "probe_share_pct": round(100 * self.probe_seconds / self.fit_seconds, 2)
            if self.fit_seconds
            else None,
            "quant_seconds": round(self.quant_seconds, 2),
            "quant_share_pct": round(100 * self.quant_seconds / self.fit_seconds, 2)
            if self.fit_seconds
            else None,
            "intervention_seconds": round(self.intervention_seconds, 2),
            "intervention_share_pct": round(100 * self.intervention_seconds / self.fit_seconds, 2)
            if self.fit_seconds
            else None,
            # probes over 10 % of the run: how to thin them (callbacks.probe keys), else None
            "probe_hint": thinning_hint(self.probe_total_seconds / self.fit_seconds)
            if self.fit_seconds
            else None,
            "checkpoint_seconds": round(self.checkpoint_seconds, 2),
            "n_checkpoints": len(self.checkpoints),
            "headline": {
                metric: {"first_step": a, "first": x, "last_step": b, "last": y}
                for metric, (a, x, b, y) in self.headline.items()
            },
        }


def prepare_data(run: RunConfig, run_dir: Path) -> tuple[SinkDataModule, ProbeSet]:
    """Build corpus, tokenizer and token cache, and the run's fixed probe set (reused on resume)."""
    datamodule = SinkDataModule(run.data, run_dir=run_dir)
    datamodule.prepare_data()
    datamodule.setup("fit")
    if RunLayout(run_dir).probe_ids.exists():
        probe_set = load_probe_set(run_dir)
    else:
        probe_set = datamodule.probe_set()
        save_probe_set(probe_set, run_dir)
    return datamodule, probe_set


def quiet_lightning_logs() -> None:
    """Route Lightning's messages through the root logger once (Hydra already prints and files
    them), and drop its advertising and hardware banner. `lightning` itself has a console
    handler of its own: left there, an INFO such as the profiler's report printed twice."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
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
    # issue 30: the budget against the corpus, stated, and refused above data.max_epochs
    budget = datamodule.budget(run.trainer.max_steps, tokens_per_step, run.model.get("vocab_size"))
    if rank_zero_only.rank == 0:
        logging.getLogger(__name__).info(budget.line())
    module = SinkLabModule(
        model=model_dict,
        optim=_plain(run.optim),
        max_steps=run.trainer.max_steps,
        tokens_per_step=tokens_per_step,
        on_nonfinite=run.trainer.on_nonfinite,
        compile=run.trainer.compile,
    )
    module.corpus_tokens = budget.corpus_tokens
    layout = RunLayout(run_dir)
    if rank_zero_only.rank == 0:  # DDP: the other ranks re-run this script into the same folder
        layout.model_config.write_text(json.dumps(model_dict, indent=2))

    callbacks: list[L.Callback] = [ThroughputMonitor()]
    if run.trainer.progress_bar:
        callbacks.append(progress_bar())
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
                evaluations=probe_evaluations(
                    datamodule, run.probe, run.data.seq_len, run.trainer.max_steps
                ),
            )
        )
    if run.checkpoint.enabled:
        callbacks.append(
            LogSpacedCheckpoint(layout.checkpoint_dir, run.checkpoint, run.trainer.max_steps)
        )
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
        profiler=run.trainer.profiler,  # debug=profile: where the time goes, printed at the end
        logger=loggers or False,
        callbacks=callbacks,
        default_root_dir=str(run_dir),
        plugins=_cluster_plugins(),
    )
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=run.ckpt_path, weights_only=True)
    except BaseException as err:
        outcome = outcome_of(err, trainer, run_dir)
        try:  # the summary of a stopped run must never hide why it stopped
            _finish(run, run_dir, trainer, module, callbacks, probe_set, outcome, resume_step)
        except Exception as summary_err:  # noqa: BLE001
            logging.getLogger(__name__).warning("summary.json not written: %s", summary_err)
        if outcome.status == INTERRUPTED:
            raise RunInterrupted(outcome.reason) from None
        raise
    finally:
        finish_loggers()
    return _finish(run, run_dir, trainer, module, callbacks, probe_set, Outcome(), resume_step)


def outcome_of(err: BaseException, trainer: L.Trainer, run_dir: Path) -> Outcome:
    """What stopped the fit, in summary.json's terms."""
    from lightning.pytorch.trainer.states import TrainerStatus

    kept = resume_checkpoint(run_dir)
    resume = f"; resume with ckpt_path={kept}" if kept else ""
    if isinstance(err, NonFiniteLossError):
        return Outcome(STOPPED, f"{err}{resume}")
    if isinstance(err, (KeyboardInterrupt, SystemExit)) and (
        isinstance(err, KeyboardInterrupt) or trainer.state.status == TrainerStatus.INTERRUPTED
    ):
        return Outcome(INTERRUPTED, f"interrupted at step {trainer.global_step}{resume}")
    first_line = (str(err).strip().splitlines() or [""])[0]
    return Outcome(FAILED, f"{type(err).__name__}: {first_line} at step {trainer.global_step}")


def _finish(
    run: RunConfig,
    run_dir: Path,
    trainer: L.Trainer,
    module: SinkLabModule,
    callbacks: list[L.Callback],
    probe_set: ProbeSet,
    outcome: Outcome,
    resume_step: int,
) -> RunResult:
    throughput = next(c for c in callbacks if isinstance(c, ThroughputMonitor))
    ckpt = next((c for c in callbacks if isinstance(c, LogSpacedCheckpoint)), None)
    probe = next((c for c in callbacks if isinstance(c, ProbeCallback)), None)
    finished = outcome.status == FINISHED
    if finished and (ckpt is None or ckpt.cfg.export_safetensors):
        weights = rank0_model(trainer, module)  # FSDP: every rank joins the gather
        if weights is not None:
            layout = RunLayout(run_dir)
            export_safetensors(weights, layout.safetensors, {"step": str(trainer.global_step)})
    fit_seconds = throughput.fit_seconds
    if not fit_seconds and getattr(throughput, "fit_start", None) is not None:
        fit_seconds = time.perf_counter() - throughput.fit_start  # stopped before on_train_end
    metrics = trainer.callback_metrics
    result = RunResult(
        run_dir=run_dir,
        final_train_loss=_float(metrics.get("train/loss")),
        final_val_loss=_float(metrics.get("val/loss")),
        checkpoints=list(ckpt.saved) if ckpt else [],
        fit_seconds=fit_seconds,
        probe_seconds=probe.seconds - probe.quant_seconds - probe.intervention_seconds
        if probe
        else 0.0,
        quant_seconds=probe.quant_seconds if probe else 0.0,
        intervention_seconds=probe.intervention_seconds if probe else 0.0,
        probe_total_seconds=probe.seconds if probe else 0.0,
        checkpoint_seconds=ckpt.seconds if ckpt else 0.0,
        tokens_seen=module.tokens_seen,
        tokens_per_s=throughput.last_tokens_per_s,
        epochs_seen=epochs_seen(module.tokens_seen, module.corpus_tokens),
        probe_history=probe.history if probe else {},
        status=outcome.status,
        reason=outcome.reason or f"reached trainer.max_steps={run.trainer.max_steps}",
        steps_completed=int(trainer.global_step),
        last_good_step=module.last_good_step,
        last_checkpoint=resume_checkpoint(run_dir),
        last_checkpoint_step=ckpt.last_full_step if ckpt else None,
        skipped_batches=module.skipped_batches,
    )
    if finished and result.skipped_share > run.trainer.max_skipped_share:
        result.status = SKIPPED_TOO_MANY
        result.reason = (
            f"skipped {result.skipped_batches} of {result.steps_completed} batches "
            f"({100 * result.skipped_share:.1f} %), above trainer.max_skipped_share="
            f"{run.trainer.max_skipped_share:g} (last update applied at step "
            f"{result.last_good_step}); lower optim.lr or raise optim.warmup_steps"
        )
    if trainer.is_global_zero:
        layout = RunLayout(run_dir)
        if run.ckpt_path:
            add_earlier_parts(result, layout.summary, resume_step)
        result.headline = headline_figures(layout.probes_table)
        sharded = "fsdp" in type(trainer.strategy).__name__.lower()  # a forward needs every rank
        if finished and module.model_cfg.attention == "gated" and not sharded:
            gate = mean_gate(module, probe_set.input_ids[: run.probe.batch_size])
            result.headline["gate/mean"] = (result.steps_completed, gate) * 2
        result.checkpoints = sorted(layout.checkpoint_dir.glob("step*.ckpt"))
        text = json.dumps(result.summary(), indent=2).encode()
        atomic_write(layout.summary, lambda fh: fh.write(text))  # a kill never leaves half
    return result


def add_earlier_parts(result: RunResult, summary_path: Path, start_step: int) -> None:
    """A resumed run's summary covers the whole run: the times of the parts before this one
    (from the summary.json they left, written whatever way they ended) are added to this
    part's, and `resumed_from` lists where each part began. Losses, steps and tokens are the
    run's own already; the headline and the checkpoints are read from the run folder."""
    if not summary_path.is_file():
        result.resumed_from = [start_step]
        return
    earlier = json.loads(summary_path.read_text())
    result.fit_seconds += float(earlier.get("fit_seconds") or 0.0)
    result.probe_seconds += float(earlier.get("probe_seconds") or 0.0)
    result.quant_seconds += float(earlier.get("quant_seconds") or 0.0)
    result.intervention_seconds += float(earlier.get("intervention_seconds") or 0.0)
    result.probe_total_seconds += float(earlier.get("probe_total_seconds") or 0.0)
    result.checkpoint_seconds += float(earlier.get("checkpoint_seconds") or 0.0)
    result.resumed_from = [*earlier.get("resumed_from", []), start_step]


def headline_figures(probes_table: Path) -> dict[str, tuple[int, float, int, float]]:
    """The headline metrics (Sink_1, its ratio, first-token mass) and every extra slot's mass
    (a sink token, a kv bias: `slot_mass/<slot>`), at the first and last probe step of the
    whole run, from the probe table (model rows)."""
    import pandas as pd

    from sinklab.analysis.names import HEADLINE

    if not probes_table.is_file():
        return {}
    df = pd.read_parquet(probes_table, columns=["step", "layer", "head", "metric", "value"])
    rows = df[(df["layer"] == -1) & (df["head"] == -1)].dropna(subset=["value"])
    slots = sorted(m for m in rows["metric"].unique() if str(m).startswith("slot_mass/"))
    out: dict[str, tuple[int, float, int, float]] = {}
    for metric in (*HEADLINE, *slots):
        series = rows[rows["metric"] == metric].sort_values("step")
        if series.empty:
            continue
        first, last = series.iloc[0], series.iloc[-1]
        out[metric] = (
            int(first["step"]),
            float(first["value"]),
            int(last["step"]),
            float(last["value"]),
        )
    return out


@torch.no_grad()
def mean_gate(module: SinkLabModule, input_ids: torch.Tensor) -> float:
    """Gated attention's figure (Qiu et al.): the mean sigmoid gate over every layer, head and
    probe position of the final model; well below 1 is the sparse gating that replaces a sink."""
    values: list[torch.Tensor] = []

    def keep(_module: torch.nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        values.append(torch.sigmoid(output.float()).mean())

    gates = [
        m.gate
        for m in module.model.modules()
        if isinstance(getattr(m, "gate", None), torch.nn.Linear)
    ]
    handles = [g.register_forward_hook(keep) for g in gates]
    was_training = module.training
    try:
        module.eval()
        module.model(input_ids.to(module.device))
    finally:
        module.train(was_training)
        for h in handles:
            h.remove()
    return float(torch.stack(values).mean()) if values else float("nan")


def _cluster_plugins() -> list[Any]:
    """Under SLURM, turn off Lightning's own requeue (its `hpc_ckpt` files, its SIGUSR1
    handler): a requeued submitit job relaunches into the same run folder and resumes from
    `last.ckpt` (sinklab.train's auto-resume), one mechanism instead of two."""
    from lightning.fabric.plugins.environments import SLURMEnvironment

    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []


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
