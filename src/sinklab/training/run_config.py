"""A composed Hydra config, validated: `validate_config` checks every section and returns a
`RunConfig`, or raises a one-line ConfigError naming the key.

Lightning-free on purpose: `sinklab-train` validates before it imports Lightning, so a typo on
the command line is reported in a moment, not after Lightning has loaded.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from sinklab.analysis.config import MetricsConfig
from sinklab.analysis.quant import QUANT_CAUSAL_ONLY
from sinklab.configs import coerce, from_mapping
from sinklab.data.config import DataConfig
from sinklab.errors import ConfigError, check, did_you_mean
from sinklab.model.config import ModelConfig
from sinklab.training.config import (
    CallbacksConfig,
    CheckpointConfig,
    LoggerConfig,
    OptimConfig,
    ProbeScheduleConfig,
    TrainerConfig,
)

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
    probe: ProbeScheduleConfig
    metrics: MetricsConfig  # probe.metrics, the thresholds the probe callback measures with
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


def _check_objective(arch: ModelConfig, data: DataConfig, callbacks: CallbacksConfig) -> None:
    """Encoder and decoder come as pairs: a bidirectional model sees the next token, so
    next-token loss would be copying; a causal model cannot use the right context that
    masked-LM hides tokens for. The streaming evaluation (a KV cache) and the W8A8 evaluation
    (next-token perplexity) are causal-only."""
    check(
        arch.causal or data.is_mlm,
        "model.causal",
        "false (bidirectional) sees the token that objective=clm predicts; "
        "use data.objective=mlm with an encoder",
    )
    check(
        not (arch.causal and data.is_mlm),
        "data.objective",
        "mlm needs a bidirectional model; set model.causal=false",
    )
    check(
        arch.causal or not (callbacks.probe.enabled and callbacks.probe.stream.enabled),
        "callbacks.probe.stream.enabled",
        "the streaming evaluation (bounded KV cache) is causal-only; set it false for "
        "model.causal=false",
    )
    check(
        arch.causal or not (callbacks.probe.enabled and callbacks.probe.quant.enabled),
        "callbacks.probe.quant.enabled",
        QUANT_CAUSAL_ONLY + "; set it false for model.causal=false",
    )


def validate_config(cfg: DictConfig | dict[str, Any]) -> RunConfig:
    """Check every section; raise ConfigError (one line, naming the key) on the first problem."""
    resolved = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    assert isinstance(resolved, dict)
    for key in resolved:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(
                str(key),
                f"unknown top-level key;{did_you_mean(str(key), TOP_LEVEL_KEYS)} "
                f"known keys: {', '.join(sorted(TOP_LEVEL_KEYS))}",
            )
    # Top-level scalars first: sections interpolate them (data.seed is ${seed}).
    seed = coerce(int, resolved.get("seed", 0), "seed")
    experiment_name = coerce(str, resolved.get("experiment_name") or "default", "experiment_name")
    run_name = coerce(str | None, resolved.get("run_name"), "run_name")
    ckpt_path = coerce(str | None, resolved.get("ckpt_path"), "ckpt_path")
    model = dict(resolved.get("model") or {})
    # Validate the architecture now; vocab_size may still be unknown (taken from the tokenizer).
    arch = ModelConfig.from_dict({**model, "vocab_size": model.get("vocab_size") or 1})
    data = DataConfig.from_dict(resolved.get("data"))
    optim = from_mapping(OptimConfig, resolved.get("optim"), "optim")
    trainer = from_mapping(TrainerConfig, resolved.get("trainer"), "trainer")
    logger = from_mapping(LoggerConfig, resolved.get("logger"), "logger")
    callbacks = from_mapping(CallbacksConfig, resolved.get("callbacks"), "callbacks")
    positions = data.seq_len + arch.n_sink_tokens
    check(
        positions <= arch.max_seq_len,
        "data.seq_len",
        f"seq_len={data.seq_len} (+{arch.n_sink_tokens} sink tokens) is above "
        f"model.max_seq_len={arch.max_seq_len}",
    )
    check(
        data.probe.seq_len <= arch.max_seq_len,
        "data.probe.seq_len",
        f"{data.probe.seq_len} is above model.max_seq_len={arch.max_seq_len}",
    )
    _check_objective(arch, data, callbacks)
    if callbacks.probe.enabled and callbacks.probe.stream.enabled:  # lengths need the window
        callbacks.probe.stream.resolved(data.seq_len, arch.pos, arch.max_seq_len)
    if callbacks.probe.enabled and callbacks.probe.quant.enabled:  # prefixes need room
        callbacks.probe.quant.check_fits(data.seq_len, arch.max_seq_len - arch.n_sink_tokens)
    if ckpt_path is not None:
        check(Path(ckpt_path).is_file(), "ckpt_path", f"no checkpoint file at {ckpt_path}")
    return RunConfig(
        model=model,
        data=data,
        optim=optim,
        trainer=trainer,
        logger=logger,
        checkpoint=callbacks.checkpoint,
        probe=callbacks.probe,
        metrics=callbacks.probe.metrics,
        seed=seed,
        experiment_name=experiment_name,
        run_name=run_name,
        ckpt_path=ckpt_path,
        resolved=resolved,
    )


def resumed_config(run_dir: Path, ckpt_path: str, overrides: list[str]) -> DictConfig:
    """The config a resume from a checkpoint of `run_dir` trains with: the run's own saved
    config (`.hydra/config.yaml`), so `ckpt_path=<run>/checkpoints/last.ckpt` alone is enough,
    with this command line's key overrides (`trainer.max_steps=2400`) on top; the model they
    give is then checked against the checkpoint as any resume's is.

    A group option (`variant=...`, `debug=tiny`) cannot be re-applied to a composed config:
    the same option as the run's passes, a different one is refused naming both."""
    import yaml
    from hydra.core.override_parser.overrides_parser import OverridesParser

    hydra_dir = run_dir / ".hydra"
    saved = OmegaConf.load(hydra_dir / "config.yaml")
    assert isinstance(saved, DictConfig)
    hydra_yaml = hydra_dir / "hydra.yaml"
    choices: dict[str, Any] = {}
    if hydra_yaml.is_file():
        runtime = (yaml.safe_load(hydra_yaml.read_text()) or {}).get("hydra", {}).get("runtime", {})
        choices = runtime.get("choices") or {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.key_or_group
        if key == "ckpt_path":
            continue
        if key in choices:
            value = override.value()
            if str(value) != str(choices[key]):
                raise ConfigError(
                    key,
                    f"{str(value)!r} is not the run's {str(choices[key])!r}: a resume trains "
                    "with the run's config; override keys (e.g. trainer.max_steps=...), or "
                    "start a new run without ckpt_path",
                )
            continue
        if override.is_delete():
            raise ConfigError(key, "deleting a key of the run's config is not a resume")
        OmegaConf.update(saved, key, override.value(), merge=False, force_add=override.is_add())
    saved.ckpt_path = ckpt_path
    return saved
