"""Validated dataclasses for the optimiser, trainer, logger and callback sections of the Hydra
config. Lightning-free, so a bad config is refused before Lightning is imported."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from sinklab.analysis.config import MetricsConfig
from sinklab.analysis.interventions import InterventionConfig
from sinklab.analysis.quant_eval import ProbeQuantConfig
from sinklab.analysis.streaming import ProbeStreamConfig
from sinklab.configs import check_choices
from sinklab.errors import check

Optimizer = Literal["adamw", "sgd"]
Schedule = Literal["cosine", "constant", "linear"]
Accelerator = Literal["cpu", "gpu", "cuda", "mps", "auto"]
Precision = Literal["32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "64-true"]
OnNonfinite = Literal["stop", "skip"]
Profiler = Literal["simple", "advanced"]  # Lightning's profilers, by their Trainer names
MeasureOn = Literal["host", "device"]
LoggerKind = Literal["wandb", "csv", "none"]
WandbMode = Literal["online", "offline", "disabled"]
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)
SCHEDULES: tuple[str, ...] = get_args(Schedule)
ACCELERATORS: tuple[str, ...] = get_args(Accelerator)
PRECISIONS: tuple[str, ...] = get_args(Precision)
NONFINITE: tuple[str, ...] = get_args(OnNonfinite)
LOGGER_KINDS: tuple[str, ...] = get_args(LoggerKind)
WANDB_MODES: tuple[str, ...] = get_args(WandbMode)


@dataclass
class OptimConfig:
    """Optimiser and learning-rate schedule (warm-up, then cosine, linear or constant)."""

    name: Optimizer = "adamw"
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    momentum: float = 0.9  # SGD only
    nesterov: bool = False  # SGD only
    decay_embeddings: bool = False  # embeddings, sink tokens and kv biases are exempt by default
    decay_norms_and_biases: bool = False  # 1-D tensors (gains, biases, sink logits)
    schedule: Schedule = "cosine"
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # final lr / peak lr for cosine and linear
    grad_clip: float | None = 1.0

    def __post_init__(self) -> None:
        check_choices(self, "optim")
        check(self.lr > 0, "optim.lr", f"must be positive, got {self.lr}")
        check(
            self.weight_decay >= 0, "optim.weight_decay", f"must be >= 0, got {self.weight_decay}"
        )
        check(
            self.warmup_steps >= 0, "optim.warmup_steps", f"must be >= 0, got {self.warmup_steps}"
        )
        check(
            0 <= self.min_lr_ratio <= 1,
            "optim.min_lr_ratio",
            f"must be in [0, 1], got {self.min_lr_ratio}",
        )
        betas = tuple(float(b) for b in self.betas)
        check(
            len(betas) == 2 and all(0 <= b < 1 for b in betas),
            "optim.betas",
            f"must be two values in [0, 1), got {list(self.betas)}",
        )
        self.betas = betas  # type: ignore[assignment]
        check(
            self.grad_clip is None or self.grad_clip > 0,
            "optim.grad_clip",
            f"must be positive or null, got {self.grad_clip}",
        )


@dataclass
class TrainerConfig:
    """What Lightning's Trainer needs, plus the few switches sinklab adds (compile, threads)."""

    accelerator: Accelerator = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: Precision = "32-true"
    max_steps: int = 2000
    accumulate_grad_batches: int = 1
    val_every_n_steps: int = 250
    log_every_n_steps: int = 10
    compile: bool = False
    deterministic: bool = False
    threads: int | None = None  # torch CPU threads; null keeps torch's default
    on_nonfinite: OnNonfinite = "stop"  # stop the run, or skip the batch and count it
    # skip: a run that skipped more than this share of its batches did not really train; it
    # ends with a warning and exit code 5 (sinklab.errors.EXIT_SKIPPED), its summary saying so
    max_skipped_share: float = 0.1
    progress_bar: bool = True
    # null | simple | advanced: Lightning's profiler; its report is printed when fit ends
    # (debug=profile sets it).
    profiler: Profiler | None = None

    def __post_init__(self) -> None:
        if isinstance(self.precision, int) and not isinstance(self.precision, bool):
            self.precision = str(self.precision)  # type: ignore[assignment]  # Trainer(precision=32)
        check_choices(self, "trainer")
        check(self.max_steps > 0, "trainer.max_steps", f"must be positive, got {self.max_steps}")
        check(self.accumulate_grad_batches >= 1, "trainer.accumulate_grad_batches", "must be >= 1")
        check(self.val_every_n_steps >= 1, "trainer.val_every_n_steps", "must be >= 1")
        check(
            0 <= self.max_skipped_share <= 1,
            "trainer.max_skipped_share",
            f"must be in [0, 1], got {self.max_skipped_share}",
        )
        check(
            self.threads is None or self.threads >= 1,
            "trainer.threads",
            f"must be >= 1 or null, got {self.threads}",
        )


@dataclass
class ScheduleConfig:
    """Pythia-style log-spaced steps: 0, 1, 2, 4, ... up to `log_spaced_until`, then every `every`."""

    enabled: bool = True
    log_spaced_until: int = 512
    every: int = 1000

    def __post_init__(self) -> None:
        check(self.log_spaced_until >= 0, "log_spaced_until", "must be >= 0")
        check(self.every >= 1, "every", f"must be >= 1, got {self.every}")


@dataclass
class CheckpointConfig(ScheduleConfig):
    """The log-spaced schedule writes weights only; `last.ckpt` (the full training state, what
    resume needs) is rewritten every `full_every` steps and at the end."""

    save_last: bool = True  # the full-state `last.ckpt`; false: the run cannot be resumed
    full_every: int = 250
    auto_resume: bool = True  # a run folder that already holds last.ckpt continues from it
    export_safetensors: bool = True  # model weights alone, loadable without any pickle

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.full_every >= 1, "full_every", f"must be >= 1, got {self.full_every}")


@dataclass
class ProbeScheduleConfig(ScheduleConfig):
    """When the probe callback measures (the schedule), how, and with which thresholds."""

    batch_size: int = 100  # the default probe set in one forward: half the time of 4 x 25 on a CPU
    # where the metric maths runs: "device" keeps the capture on the model's device (the GPU's
    # medians and eigen-decompositions; no host copies), "host" copies it to the CPU first.
    # On a CPU run both are the same.
    measure_on: MeasureOn = "device"
    images: bool = True  # attention maps and activation plots on W&B
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    stream: ProbeStreamConfig = field(default_factory=ProbeStreamConfig)
    quant: ProbeQuantConfig = field(default_factory=ProbeQuantConfig)
    interventions: InterventionConfig = field(default_factory=InterventionConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        check(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")


@dataclass
class CallbacksConfig:
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    probe: ProbeScheduleConfig = field(default_factory=ProbeScheduleConfig)


@dataclass
class LoggerConfig:
    kind: LoggerKind = "wandb"
    project: str = "sinklab"
    entity: str | None = None
    group: str | None = None  # null: the experiment's name
    name: str | None = None  # null: derived from the command-line overrides
    mode: WandbMode | None = None  # null: online if WANDB_API_KEY is set, else offline
    tags: list[str] = field(default_factory=list)
    csv: bool = True  # also keep Lightning's metrics.csv next to the run

    def __post_init__(self) -> None:
        check_choices(self, "logger")
