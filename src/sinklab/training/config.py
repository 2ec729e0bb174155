"""Validated dataclasses for the optimiser, trainer, logger and callback sections of the Hydra
config. Lightning-free, so a bad config is refused before Lightning is imported."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, get_args

from sinklab.analysis.config import MetricsConfig
from sinklab.analysis.prefix import PrefixConfig, prefix_eval
from sinklab.analysis.quant import QuantConfig, w8a8_eval
from sinklab.analysis.streaming import StreamConfig
from sinklab.configs import check_choices, from_mapping
from sinklab.errors import ConfigError, check
from sinklab.runs.schedule import is_scheduled

if TYPE_CHECKING:
    import pandas as pd

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
    progress_bar: bool = True
    # null | simple | advanced: Lightning's profiler, its report printed when fit ends
    # (debug=profile). Not in conf/trainer/cpu.yaml, so the default run's config hash stays;
    # set it with debug=profile or +trainer.profiler=simple.
    profiler: Profiler | None = None

    def __post_init__(self) -> None:
        if isinstance(self.precision, int) and not isinstance(self.precision, bool):
            self.precision = str(self.precision)  # type: ignore[assignment]  # Trainer(precision=32)
        check_choices(self, "trainer")
        check(self.max_steps > 0, "trainer.max_steps", f"must be positive, got {self.max_steps}")
        check(self.accumulate_grad_batches >= 1, "trainer.accumulate_grad_batches", "must be >= 1")
        check(self.val_every_n_steps >= 1, "trainer.val_every_n_steps", "must be >= 1")
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


STREAM_KEY = "callbacks.probe.stream"


@dataclass(frozen=True)
class ProbeStreamConfig(StreamConfig):
    """`callbacks.probe.stream`: the streaming evaluation (StreamConfig's keys) plus `enabled`.

    The defaults keep the default run's probe share within 3 % with the evaluation at every
    probe step: R_win and R_4 only (window_shift, sinks4_shift and the oracle; no dense pass)
    and a sparse oracle (every 64th query position, 31 on the default 2048-token stream; the
    ratios pair positions, so their noise is that of the per-position NLL differences).
    `every_n_probes: n` thins it to every n-th probe step (the last always included).
    """

    enabled: bool = True
    every_n_probes: int = 1
    conditions: tuple[str, ...] = ("window", "sinks", "recompute")
    sink_counts: tuple[int, ...] = (4,)
    shift_modes: tuple[str, ...] = ("shift",)
    recompute_stride: int = 64

    def core(self) -> StreamConfig:
        """The plain StreamConfig (without `enabled`), what `stream_eval` takes."""
        values = self.to_dict()
        values.pop("enabled")
        return StreamConfig(**values)

    def resolved(
        self, window: int, pos: str | None = None, max_seq_len: int | None = None
    ) -> StreamConfig:
        """The StreamConfig of a run with training window `window` (T, C and buckets filled),
        checked against the model's positions; a bad combination is a one-line ConfigError
        keyed `callbacks.probe.stream.<key>`, raised before training starts."""
        try:
            cfg = self.core().resolve(window)
            if pos == "learned" and max_seq_len is not None:
                check(
                    cfg.cache_len <= max_seq_len,
                    "stream.cache_len",
                    f"{cfg.cache_len} is past the learned position table "
                    f"(model.max_seq_len={max_seq_len})",
                )
        except ConfigError as err:
            key = f"{STREAM_KEY}.{err.key.rsplit('.', 1)[-1]}"
            raise ConfigError(key, str(err).removeprefix(f"{err.key}: ")) from None
        return cfg


QUANT_KEY = "callbacks.probe.quant"


@dataclass(frozen=True)
class ProbeQuantConfig:
    """`callbacks.probe.quant`: the fake-quantised W8A8 evaluation (`analysis.quant`) and, with
    `prefixes` non-empty, the prefixed-sink evaluation (`analysis.prefix`) at the first and
    last steps and at the probe steps from `from_step` on that are powers of two.

    On for causal models in `conf/callbacks/default.yaml` (the dataclass default stays off, for
    code that builds one by hand): one evaluation of the default run's model (64 windows x 128
    tokens, 4 calibration batches, 3 modes) takes about 1 s on one CPU thread (0.65 s on two),
    and the default run has three (steps 0, 256 and 1200). Its time is reported apart from the
    probes' (`quant_share_pct` beside `probe_share_pct` in the run summary), since it runs on
    its own, sparser schedule. Calibration batches are training batches
    `RunData.batch_at(CALIB_INDEX + k)`, indices no run reaches; the evaluation windows are the
    first `eval_windows` validation windows. Both are saved to `probe/quant_ids.npz`.
    """

    enabled: bool = False
    from_step: int = 256
    eval_windows: int = 64
    bits: int = 8
    weight_granularity: str = "per_channel"
    modes: tuple[str, ...] = ("per_tensor_static", "per_tensor_dynamic", "per_token_dynamic")
    calibration_batches: int = 4
    batch_size: int = 32
    prefixes: tuple[str, ...] = ()  # bos, prefixquant, cushioncache: ~25 s each evaluation
    max_len: int = 4
    eta: float = 64.0
    n_candidates: int = 32
    min_gain: float = 0.05
    search_batches: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "modes", tuple(self.modes))
        object.__setattr__(self, "prefixes", tuple(self.prefixes))
        check(self.from_step >= 0, f"{QUANT_KEY}.from_step", f"must be >= 0, got {self.from_step}")
        check(
            self.eval_windows >= 1,
            f"{QUANT_KEY}.eval_windows",
            f"must be >= 1, got {self.eval_windows}",
        )
        try:
            self.quant()
            self.prefix()
        except ConfigError as err:
            key = f"{QUANT_KEY}.{err.key.rsplit('.', 1)[-1]}"
            raise ConfigError(key, str(err).removeprefix(f"{err.key}: ")) from None

    def quant(self) -> QuantConfig:
        """The `QuantConfig` part (what `w8a8_eval` and `prefix_eval` take)."""
        keys = ("bits", "weight_granularity", "modes", "calibration_batches", "batch_size")
        return QuantConfig(**{k: getattr(self, k) for k in keys})

    def prefix(self, bos_id: int | None = None) -> PrefixConfig:
        """The `PrefixConfig` part, with the tokenizer's BOS filled in by the caller."""
        keys = ("prefixes", "max_len", "eta", "n_candidates", "min_gain", "search_batches")
        return PrefixConfig(bos_id=bos_id, **{k: getattr(self, k) for k in keys})

    @classmethod
    def from_dict(cls, values: Any) -> ProbeQuantConfig:
        return from_mapping(cls, values, QUANT_KEY)

    def due(self, step: int, max_steps: int, log_spaced_until: int, every: int) -> bool:
        """Whether the probe at `step` also runs this evaluation: the first and last steps, and
        the probe steps from `from_step` on that are powers of two (all checkpoints by default)."""
        if step in (0, max_steps):
            return True
        power = step >= self.from_step and step & (step - 1) == 0
        return power and is_scheduled(step, max_steps, log_spaced_until, every)

    def check_fits(self, window: int, room: int | None, key: str = QUANT_KEY) -> None:
        """A prefix plus a window must fit the model (`room`: model.max_seq_len minus its sink
        tokens; None: no limit): checked before any work, naming `{key}.max_len`."""
        if self.prefixes and room is not None and self.max_len + window > room:
            raise ConfigError(
                f"{key}.max_len",
                f"a {self.max_len}-token prefix plus {window}-token windows needs "
                f"{self.max_len + window} positions; the model has {room}",
            )

    def evaluate(
        self,
        model: Any,
        eval_ids: Any,
        calib: Sequence[Any],
        bos_id: int | None,
        key: str = QUANT_KEY,
    ) -> pd.DataFrame:
        """The rows: `w8a8_eval`, or `prefix_eval` (the same rows plus `quant/prefix/*`) when
        `prefixes` are asked for. The one path the callback and sinklab-analyze share; a bad
        input is a ConfigError naming `{key}.<field>` (sinklab-analyze passes `quant`)."""
        try:
            if not self.prefixes:
                return w8a8_eval(model, eval_ids, list(calib), self.quant())
            return prefix_eval(model, eval_ids, list(calib), self.quant(), self.prefix(bos_id))
        except ConfigError as err:
            leaf = err.key.rsplit(".", 1)[-1]
            leaf = "prefixes" if leaf == "bos_id" else leaf  # bos_id comes from the tokenizer
            raise ConfigError(f"{key}.{leaf}", str(err).removeprefix(f"{err.key}: ")) from None


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
