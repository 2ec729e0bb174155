"""`AnalyzeConfig`: the validated form of conf/analyze.yaml.

Every option of `sinklab-analyze` is a key here with a default; a bad value is a one-line
`ConfigError` naming the key, raised before any model is loaded or any file is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sinklab.analysis.config import GROUPS
from sinklab.errors import ConfigError, check, check_choice

STEP_MODES = ("all", "log")
BOS_CHOICES = ("none", "bos")


@dataclass(frozen=True)
class AnalyzeConfig:
    """What to measure, where, and with which options.

    `steps` is "all", "log" (step 0, powers of two and the last checkpoint) or a tuple of
    step numbers. `groups` (None: keep the run's own choice) switches metric groups on and
    every other group off; `metrics` overrides single `MetricsConfig` fields on top of the
    run's own thresholds. `batch_size` None reuses the run's probe batch size, so the
    chunking, and therefore every float, matches the callback. The corpus options apply
    to pretrained targets only.
    """

    target: str
    steps: str | tuple[int, ...] = "all"
    device: str = "cpu"
    out_dir: str | None = None
    force: bool = False
    batch_size: int | None = None
    groups: tuple[str, ...] | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    corpus: str = "shakespeare"
    n_windows: int = 100
    seq_len: int = 64
    bos: str = "none"
    output_dir: str = "outputs"  # where pretrained results go when out_dir is null
    cache_dir: str | None = None
    progress: bool = True


def _steps(value: Any) -> str | tuple[int, ...]:
    if isinstance(value, str):
        check_choice("steps", value, (*STEP_MODES, "[<step>, ...]"))
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError("steps", f"expected all, log or a non-empty list of steps, got {value!r}")
    out = []
    for step in value:
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ConfigError("steps", f"steps must be integers >= 0, got {step!r}")
        out.append(step)
    return tuple(sorted(set(out)))


def _device(value: Any) -> str:
    import torch

    value = str(value)
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


def from_mapping(raw: Mapping[str, Any]) -> AnalyzeConfig:
    """Validate a plain mapping (the resolved Hydra config, `paths` section included)."""
    raw = dict(raw)
    paths = dict(raw.pop("paths", None) or {})
    known = {
        "target",
        "steps",
        "device",
        "out_dir",
        "force",
        "batch_size",
        "groups",
        "metrics",
        "corpus",
        "n_windows",
        "seq_len",
        "bos",
        "progress",
    }
    for key in raw:
        if key not in known:
            raise ConfigError(str(key), f"unknown key; known keys: {', '.join(sorted(known))}")
    target = raw.get("target")
    check(
        isinstance(target, str) and target.strip() != "",
        "target",
        "required: a run or multirun folder, a .ckpt file, hf:<folder>, gguf:<file> or smollm2",
    )
    batch_size = raw.get("batch_size")
    check(
        batch_size is None or (isinstance(batch_size, int) and batch_size >= 1),
        "batch_size",
        f"must be null or an integer >= 1, got {batch_size!r}",
    )
    groups = raw.get("groups")
    if groups is not None:
        if isinstance(groups, str):
            groups = [g.strip() for g in groups.split(",") if g.strip()]
        check(
            isinstance(groups, (list, tuple)) and len(groups) > 0,
            "groups",
            f"null or a non-empty list of: {', '.join(GROUPS)}",
        )
        for g in groups:
            check_choice("groups", g, GROUPS)
        groups = tuple(groups)
    metrics = raw.get("metrics") or {}
    check(isinstance(metrics, Mapping), "metrics", "must be a mapping of MetricsConfig overrides")
    n_windows, seq_len = raw.get("n_windows", 100), raw.get("seq_len", 64)
    check(
        isinstance(n_windows, int) and n_windows >= 1,
        "n_windows",
        f"must be an integer >= 1, got {n_windows!r}",
    )
    check(
        isinstance(seq_len, int) and seq_len >= 2,
        "seq_len",
        f"must be an integer >= 2, got {seq_len!r}",
    )
    bos = str(raw.get("bos", "none"))
    check_choice("bos", bos, BOS_CHOICES)
    force = raw.get("force", False)
    check(isinstance(force, bool), "force", f"must be true or false, got {force!r}")
    out_dir = raw.get("out_dir")
    check(out_dir is None or isinstance(out_dir, str), "out_dir", "must be null or a folder path")
    return AnalyzeConfig(
        target=str(target).strip(),
        steps=_steps(raw.get("steps", "all")),
        device=_device(raw.get("device", "cpu")),
        out_dir=str(Path(out_dir).expanduser()) if out_dir else None,
        force=force,
        batch_size=batch_size,
        groups=groups,
        metrics=dict(metrics),
        corpus=str(raw.get("corpus", "shakespeare")),
        n_windows=n_windows,
        seq_len=seq_len,
        bos=bos,
        output_dir=str(paths.get("output_dir") or "outputs"),
        cache_dir=paths.get("cache_dir"),
        progress=bool(raw.get("progress", True)),
    )
