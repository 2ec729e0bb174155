"""Turn the `target=` string into something to measure.

A run folder, a multirun folder (its numbered job folders), a single checkpoint inside a
run, or a pretrained model (`hf:<folder>`, `gguf:<file>`, `smollm2`). Anything else is a
one-line `ConfigError` on `target`, raised before a model is loaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sinklab.data.probe_set import IDS_FILE, PROBE_DIR
from sinklab.errors import ConfigError

CKPT_RE = re.compile(r"^step(\d+)-tokens(\d+)\.ckpt$")


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint file with the step and token count its name promises."""

    path: Path
    step: int
    tokens_seen: int


@dataclass(frozen=True)
class RunTarget:
    """A run folder and the checkpoints to measure (None: every one in the folder)."""

    run_dir: Path
    only: tuple[Path, ...] | None = None


@dataclass(frozen=True)
class PretrainedTarget:
    """An imported model: kind is hf, gguf or smollm2; path is None for smollm2."""

    kind: str
    path: Path | None

    @property
    def name(self) -> str:
        """A short name for folders and the run_id column."""
        if self.kind == "smollm2":
            return "smollm2-135m"
        assert self.path is not None
        return self.path.stem if self.path.is_file() else self.path.name


Target = RunTarget | PretrainedTarget


def is_run_dir(path: Path) -> bool:
    """A sinklab run folder holds its probe set (and usually checkpoints/)."""
    return (path / PROBE_DIR / IDS_FILE).is_file()


def job_dirs(multirun: Path) -> list[Path]:
    """The run folders directly below a multirun folder, in job-number order."""
    jobs = [p for p in multirun.iterdir() if p.is_dir() and is_run_dir(p)]
    return sorted(jobs, key=lambda p: (0, int(p.name)) if p.name.isdigit() else (1, p.name))


def list_checkpoints(run_dir: Path) -> list[CheckpointFile]:
    """`step*-tokens*.ckpt` files of a run, by step; last.ckpt is a link to one of them."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = []
    for p in folder.iterdir():
        m = CKPT_RE.match(p.name)
        if m and p.is_file():
            found.append(CheckpointFile(p, int(m.group(1)), int(m.group(2))))
    return sorted(found, key=lambda c: c.step)


def select_steps(
    ckpts: list[CheckpointFile], steps: str | tuple[int, ...]
) -> tuple[list[CheckpointFile], list[int]]:
    """The checkpoints to measure, and the asked-for steps that have no checkpoint.

    "log" keeps step 0, every power of two and the last checkpoint: a log-x curve with
    evenly spread points however long the run was.
    """
    if steps == "all":
        return list(ckpts), []
    if steps == "log":
        last = ckpts[-1].step if ckpts else None
        keep = [c for c in ckpts if c.step == 0 or (c.step & (c.step - 1)) == 0 or c.step == last]
        return keep, []
    wanted = set(steps)
    keep = [c for c in ckpts if c.step in wanted]
    missing = sorted(wanted - {c.step for c in ckpts})
    return keep, missing


def resolve(target: str) -> list[Target]:
    """The runs (one per job for a multirun) or the pretrained model that `target` names."""
    if target == "smollm2":
        return [PretrainedTarget("smollm2", None)]
    for prefix in ("hf:", "gguf:"):
        if target.startswith(prefix):
            path = Path(target[len(prefix) :]).expanduser()
            kind = prefix[:-1]
            if kind == "hf" and not (path / "config.json").is_file():
                raise ConfigError(
                    "target", f"hf:{path}: not a Hugging Face model folder (no config.json)"
                )
            if kind == "gguf" and not path.is_file():
                raise ConfigError("target", f"gguf:{path}: no such file")
            return [PretrainedTarget(kind, path.resolve())]
    path = Path(target).expanduser()
    if not path.exists():
        raise ConfigError(
            "target",
            f"{target!r} does not exist; give a run or multirun folder, a .ckpt file, hf:<folder>, gguf:<file> or smollm2",
        )
    path = path.resolve()
    if path.is_file():
        if path.suffix != ".ckpt":
            raise ConfigError("target", f"{path}: a file target must be a .ckpt checkpoint")
        run_dir = path.parent.parent
        if path.parent.name != "checkpoints" or not is_run_dir(run_dir):
            raise ConfigError(
                "target",
                f"{path}: a checkpoint is measured on its run's probe set; it must sit in <run>/checkpoints/",
            )
        return [RunTarget(run_dir, (path,))]
    if is_run_dir(path):
        return [RunTarget(path)]
    jobs = job_dirs(path)
    if jobs:
        return [RunTarget(j) for j in jobs]
    raise ConfigError(
        "target",
        f"{path}: neither a run folder (no probe/{IDS_FILE}) nor a multirun folder of runs",
    )
