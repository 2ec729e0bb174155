"""`AnalyzeConfig`: the validated form of conf/analyze.yaml.

Every option of `sinklab-analyze` is a key here with a default; a bad value is a one-line
`ConfigError` naming the key, raised before any model is loaded or any file is written.
Types and unknown keys are checked by `sinklab.configs.from_mapping`, like every other section;
`__post_init__` holds the checks a type cannot say.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

from sinklab import configs
from sinklab.analysis.config import MetricGroup
from sinklab.analysis.interventions import InterventionConfig
from sinklab.analysis.quant_eval import ProbeQuantConfig, nest_quant
from sinklab.analysis.streaming import ProbeStreamConfig
from sinklab.errors import ConfigError, check

StepMode = Literal["all", "log", "last"]
ProbeBos = Literal["none", "bos"]
MeasureOn = Literal["host", "device"]
STEP_MODES: tuple[str, ...] = get_args(StepMode)
BOS_CHOICES: tuple[str, ...] = get_args(ProbeBos)
_TARGET_HELP = (
    "required: a run or multirun folder, a .ckpt file, hf:<folder>, hf:<org>/<name>, "
    "gguf:<file>, smollm2 or gemma3"
)


@dataclass(frozen=True)
class AnalyzePaths:
    """The `paths` section of conf/analyze.yaml (shared with training: conf/paths/)."""

    output_dir: str = "outputs"  # where pretrained results go when out_dir is null
    cache_dir: str | None = None


def stream_overrides(values: Any) -> dict[str, Any]:
    """The `stream` section: `ProbeStreamConfig`'s keys (the streaming evaluation's settings,
    `enabled` and `every_n_probes`), each null to keep the run's own `callbacks.probe.stream`
    setting (a pretrained model: StreamConfig's default, with the window = `seq_len`).
    `enabled` null: on when the run's callback ran it (pretrained: on), off when `groups=`
    picks metric groups. Returns the keys set (not null), validated by building the real
    config: a bad value or an unknown key is a one-line ConfigError naming `stream.<key>`."""
    given = _set_keys(values)
    # the sink counts the run or the defaults bring are checked against the cache once known
    ProbeStreamConfig.from_dict({"sink_counts": [1], **given})
    return given


def quant_overrides(values: Any) -> dict[str, Any]:
    """The `quant` section: `ProbeQuantConfig`'s keys, nested (`quantizer.bits`,
    `prefix.prefixes`) or flat as before the sections (`bits`, `prefixes`), each null to keep
    the run's own `callbacks.probe.quant` setting (a pretrained model: its defaults). `enabled`
    null: at the steps where the run's callback ran it, off with `groups=` and for pretrained
    targets; true: at every selected checkpoint. A run re-measures on its saved windows
    (`probe/quant_ids.npz`); a pretrained model on windows of `corpus`. Returns the keys set,
    nested, validated like `stream_overrides` (errors name `quant.<section>.<key>`)."""
    given = nest_quant(_set_keys(values))
    ProbeQuantConfig.from_dict(given, section="quant")
    return given


def intervention_overrides(values: Any) -> dict[str, Any]:
    """The `interventions` section: `InterventionConfig`'s keys, each null to keep the run's
    own `callbacks.probe.interventions` setting. `enabled` null: at the steps where the run's
    callback ran them, and with `groups=` at every selected checkpoint exactly when the groups
    name `interventions` (a pretrained model: only then); true: at every selected checkpoint.
    Returns the keys set, validated like `stream_overrides` (errors name `interventions.<key>`)."""
    given = _set_keys(values)
    InterventionConfig.from_dict(given, section="interventions")
    return given


def _set_keys(values: Any) -> dict[str, Any]:
    """`values` without its null keys (null: keep the run's), nested sections alike."""
    values = configs.plain(values)
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise ConfigError("config", f"must be a mapping, got {values!r}")
    out = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            value = _set_keys(value)
            if not value:
                continue
        if value is not None:
            out[key] = value
    return out


@dataclass(frozen=True)
class AnalyzeConfig:
    """What to measure, where, and with which options.

    `steps` is "all", "log" (step 0, powers of two and the last checkpoint), "last" (the
    final checkpoint, whatever the run's length) or a tuple of step numbers. `groups` (None:
    keep the run's own choice) switches metric groups on and every other group off; `metrics`
    overrides single `MetricsConfig` fields on top of the run's own thresholds. `stream`
    re-runs the streaming evaluation and `quant` the W8A8 one (`stream_overrides`,
    `quant_overrides`). `batch_size` None reuses the
    run's probe batch size, so the chunking, and therefore every float, matches the callback.
    The corpus options apply to pretrained targets only. `revisions` (a Hub target
    `hf:<org>/<name>` only) makes a trajectory: `log` (step0, 1, 2, 4, ..., 512, then
    log-spaced thousands among the repo's step branches) or a list of revision names, each
    naming its step (`step1000`, `step1000-tokens4B`); None measures the repo's main once.
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
    revisions: str | tuple[str, ...] | None = None  # Hub targets: log or revision names
    progress: bool = True
    stream: dict[str, Any] = field(default_factory=dict)  # see stream_overrides
    quant: dict[str, Any] = field(default_factory=dict)  # see quant_overrides
    interventions: dict[str, Any] = field(default_factory=dict)  # see intervention_overrides
    paths: AnalyzePaths = field(default_factory=AnalyzePaths)

    def __post_init__(self) -> None:
        configs.check_choices(self, "")
        object.__setattr__(self, "stream", _section("stream", stream_overrides, self.stream))
        object.__setattr__(self, "quant", _section("quant", quant_overrides, self.quant))
        interventions = _section("interventions", intervention_overrides, self.interventions)
        object.__setattr__(self, "interventions", interventions)
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
        object.__setattr__(self, "revisions", _revisions(self.revisions, self.target))
        if self.steps != "all" and self.target.startswith("hf:"):
            from sinklab.reanalysis.hub import is_hub_id

            check(
                not is_hub_id(self.target[3:]),
                "steps",
                f"{self.steps!r}: a Hub model's checkpoints are its revisions; use "
                "revisions=log or revisions=[step1000, ...]",
            )

    @property
    def output_dir(self) -> str:
        return self.paths.output_dir

    @property
    def cache_dir(self) -> str | None:
        return self.paths.cache_dir


def _section(key: str, overrides: Any, values: Any) -> dict[str, Any]:
    """`overrides(values)`, a non-mapping named by `key`."""
    try:
        return overrides(values)
    except ConfigError as err:
        if err.key == "config":
            raise ConfigError(key, str(err).removeprefix("config: ")) from None
        raise


def _revisions(value: str | tuple[str, ...] | None, target: str) -> str | tuple[str, ...] | None:
    """`log`, a tuple of revision names (`step0,step1000` typed without brackets is split),
    or None; refused for targets other than a Hub id."""
    if value is None:
        return None
    if isinstance(value, str):
        value = "log" if value.strip() == "log" else tuple(value.split(","))
    if not isinstance(value, str):
        value = tuple(dict.fromkeys(v.strip() for v in value if v.strip()))
        check(len(value) > 0, "revisions", "null, log or a non-empty list of revision names")
    from sinklab.reanalysis.hub import is_hub_id

    check(
        target.startswith("hf:") and is_hub_id(target[3:]),
        "revisions",
        f"a trajectory needs a Hub model target (hf:<org>/<name>), not {target!r}; "
        "use revisions=null",
    )
    return value


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
