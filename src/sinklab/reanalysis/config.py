"""`AnalyzeConfig`: the validated form of conf/analyze.yaml.

Every option of `sinklab-analyze` is a key here with a default; a bad value is a one-line
`ConfigError` naming the key, raised before any model is loaded or any file is written.
Types and unknown keys are checked by `sinklab.configs.from_mapping`, like every other section;
`__post_init__` holds the checks a type cannot say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from sinklab import configs
from sinklab.analysis.config import MetricGroup
from sinklab.analysis.streaming import StreamConfig
from sinklab.errors import ConfigError, check

StepMode = Literal["all", "log", "last"]
ProbeBos = Literal["none", "bos"]
MeasureOn = Literal["host", "device"]
STEP_MODES: tuple[str, ...] = get_args(StepMode)
BOS_CHOICES: tuple[str, ...] = get_args(ProbeBos)
_TARGET_HELP = (
    "required: a run or multirun folder, a .ckpt file, hf:<folder>, gguf:<file> or smollm2"
)


@dataclass(frozen=True)
class AnalyzePaths:
    """The `paths` section of conf/analyze.yaml (shared with training: conf/paths/)."""

    output_dir: str = "outputs"  # where pretrained results go when out_dir is null
    cache_dir: str | None = None


@dataclass(frozen=True)
class AnalyzeStreamConfig:
    """The `stream` section: the streaming evaluation's `StreamConfig` keys, each null to keep
    the run's own setting (`callbacks.probe.stream`; a pretrained model: StreamConfig's
    default, with the window = `seq_len`). `enabled` null: on when the run's callback ran it
    (pretrained: on), off when `groups=` picks metric groups."""

    enabled: bool | None = None
    stream_len: int | None = None
    stream_windows: int | None = None
    cache_len: int | None = None
    conditions: tuple[str, ...] | None = None
    sink_counts: tuple[int, ...] | None = None
    shift_modes: tuple[str, ...] | None = None
    bucket_len: int | None = None
    recompute_stride: int | None = None
    recompute_batch_size: int | None = None

    def __post_init__(self) -> None:
        # bad values: StreamConfig's own one-line errors (`stream.<key>`); the sink counts the
        # run or the defaults bring are checked against the cache once they are known
        StreamConfig.from_dict({"sink_counts": [1], **self.overrides()})

    def overrides(self) -> dict[str, Any]:
        """The keys set here (not null), as StreamConfig fields."""
        values = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "enabled"}
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if v is not None
        }


@dataclass(frozen=True)
class AnalyzeQuantConfig:
    """The `quant` section: `ProbeQuantConfig`'s keys (the W8A8 evaluation and prefixed sinks),
    each null to keep the run's own `callbacks.probe.quant` setting (a pretrained model: its
    defaults). `enabled` null: at the steps where the run's callback ran it, off with `groups=`
    and for pretrained targets; true: at every selected checkpoint. A run re-measures on its
    saved windows (`probe/quant_ids.npz`); a pretrained model on windows of `corpus`."""

    enabled: bool | None = None
    eval_windows: int | None = None
    bits: int | None = None
    weight_granularity: str | None = None
    modes: tuple[str, ...] | None = None
    calibration_batches: int | None = None
    batch_size: int | None = None
    prefixes: tuple[str, ...] | None = None
    max_len: int | None = None
    eta: float | None = None
    n_candidates: int | None = None
    min_gain: float | None = None
    search_batches: int | None = None

    def __post_init__(self) -> None:
        from sinklab.training.config import ProbeQuantConfig

        try:
            ProbeQuantConfig.from_dict(self.overrides())
        except ConfigError as err:
            raise ConfigError(f"quant.{err.key.rsplit('.', 1)[-1]}", _msg(err)) from None

    def overrides(self) -> dict[str, Any]:
        """The keys set here (not null), as ProbeQuantConfig fields."""
        values = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "enabled"}
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in values.items() if v is not None
        }


def _msg(err: ConfigError) -> str:
    return str(err).removeprefix(f"{err.key}: ")


@dataclass(frozen=True)
class AnalyzeConfig:
    """What to measure, where, and with which options.

    `steps` is "all", "log" (step 0, powers of two and the last checkpoint), "last" (the
    final checkpoint, whatever the run's length) or a tuple of step numbers. `groups` (None:
    keep the run's own choice) switches metric groups on and every other group off; `metrics`
    overrides single `MetricsConfig` fields on top of the run's own thresholds. `stream`
    re-runs the streaming evaluation (see AnalyzeStreamConfig). `batch_size` None reuses the
    run's probe batch size, so the chunking, and therefore every float, matches the callback.
    The corpus options apply to pretrained targets only.
    """

    target: str = ""  # required; empty is refused with the list of what a target can be
    steps: StepMode | tuple[int, ...] = "all"
    device: str = "cpu"
    measure_on: MeasureOn = "device"  # as callbacks.probe.measure_on: where the metric maths runs
    out_dir: str | None = None
    force: bool = False
    batch_size: int | None = None
    groups: tuple[MetricGroup, ...] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    corpus: str = "shakespeare"
    n_windows: int = 100
    seq_len: int = 64
    bos: ProbeBos = "none"
    progress: bool = True
    stream: AnalyzeStreamConfig = field(default_factory=AnalyzeStreamConfig)
    quant: AnalyzeQuantConfig = field(default_factory=AnalyzeQuantConfig)
    paths: AnalyzePaths = field(default_factory=AnalyzePaths)

    def __post_init__(self) -> None:
        configs.check_choices(self, "")
        check(self.target.strip() != "", "target", _TARGET_HELP)
        object.__setattr__(self, "target", self.target.strip())
        if not isinstance(self.steps, str):
            check(len(self.steps) > 0, "steps", "expected all, log or a non-empty list of steps")
            for step in self.steps:
                check(step >= 0, "steps", f"steps must be integers >= 0, got {step}")
            object.__setattr__(self, "steps", tuple(sorted(set(self.steps))))
        object.__setattr__(self, "device", _device(self.device))
        if self.out_dir:
            object.__setattr__(self, "out_dir", str(Path(self.out_dir).expanduser()))
        check(
            self.batch_size is None or self.batch_size >= 1,
            "batch_size",
            f"must be null or an integer >= 1, got {self.batch_size!r}",
        )
        if self.groups is not None:
            check(len(self.groups) > 0, "groups", "null or a non-empty list of metric groups")
        check(self.n_windows >= 1, "n_windows", f"must be an integer >= 1, got {self.n_windows}")
        check(self.seq_len >= 2, "seq_len", f"must be an integer >= 2, got {self.seq_len}")

    @property
    def output_dir(self) -> str:
        return self.paths.output_dir

    @property
    def cache_dir(self) -> str | None:
        return self.paths.cache_dir


def _device(value: str) -> str:
    import torch

    if value == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(value)
    except (RuntimeError, ValueError):
        raise ConfigError(
            "device", f"{value!r} is not a torch device (cpu, cuda, cuda:1, mps, auto)"
        ) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device", f"{value!r} asked for, but CUDA is not available here")
    return value


def from_mapping(raw: Any) -> AnalyzeConfig:
    """Validate a plain mapping or Hydra node (the resolved config, `paths` included)."""
    raw = dict(configs.plain(raw) or {})
    if isinstance(raw.get("groups"), str):  # groups=sinks,qk typed without brackets
        raw["groups"] = [g.strip() for g in raw["groups"].split(",") if g.strip()]
    return configs.from_mapping(AnalyzeConfig, raw, "")
