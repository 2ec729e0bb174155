"""Every path inside a run folder, named once.

A run folder is what `sinklab-train` writes and what reanalysis, plots and reports read:

    <run>/
      .hydra/config.yaml           the composed config Hydra saved (+ overrides.yaml)
      model_config.json            the model's resolved keys (vocab size filled in)
      probe/probe_set.npz          the fixed probe windows (ids, masks), + probe_text.jsonl
      probe/stream_ids.npy         the held-out stream of the streaming evaluation (int64 [T])
      probe/quant_ids.npz          the W8A8 evaluation's windows and calibration batches
      checkpoints/step*-tokens*.ckpt  weights only, on the log-spaced schedule (analysis)
      checkpoints/last.ckpt        the full training state (what resume reads)
      wandb_id.txt                 the W&B run id, so a resumed run continues the same W&B run
      metrics/probes.parquet       the probe callback's tidy rows
      metrics/reanalysis.parquet   rows re-measured by sinklab-analyze (+ .csv)
      csv/metrics.csv              the CSV logger's curves
      model.safetensors            the final weights, no pickle
      summary.json                 losses, throughput, probe share

Code that needs one of these asks `RunLayout(run_dir).<name>` instead of joining strings, so
the layout can change in one place.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from omegaconf import OmegaConf

HYDRA_DIR = ".hydra"
PROBE_DIR = "probe"
PROBE_IDS_FILE = "probe_set.npz"
PROBE_TEXT_FILE = "probe_text.jsonl"
STREAM_IDS_FILE = "stream_ids.npy"
QUANT_IDS_FILE = "quant_ids.npz"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
METRICS_DIR = "metrics"
PROBES_TABLE = "probes.parquet"
REANALYSIS_TABLE = "reanalysis.parquet"
CSV_DIR = "csv"
SAFETENSORS_FILE = "model.safetensors"
MODEL_CONFIG_FILE = "model_config.json"
SUMMARY_FILE = "summary.json"
WANDB_ID_FILE = "wandb_id.txt"

# The metric tables a run can hold, by the short name reports and scripts use.
TABLES = {"probes": PROBES_TABLE, "reanalysis": REANALYSIS_TABLE}


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run folder (nothing is created or checked here)."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    @property
    def hydra_dir(self) -> Path:
        return self.root / HYDRA_DIR

    @property
    def hydra_config(self) -> Path:
        return self.hydra_dir / "config.yaml"

    @property
    def hydra_overrides(self) -> Path:
        return self.hydra_dir / "overrides.yaml"

    @property
    def model_config(self) -> Path:
        return self.root / MODEL_CONFIG_FILE

    @property
    def probe_dir(self) -> Path:
        return self.root / PROBE_DIR

    @property
    def probe_ids(self) -> Path:
        return self.probe_dir / PROBE_IDS_FILE

    @property
    def probe_text(self) -> Path:
        return self.probe_dir / PROBE_TEXT_FILE

    @property
    def stream_ids(self) -> Path:
        return self.probe_dir / STREAM_IDS_FILE

    @property
    def quant_ids(self) -> Path:
        return self.probe_dir / QUANT_IDS_FILE

    @property
    def checkpoint_dir(self) -> Path:
        return self.root / CHECKPOINT_DIR

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoint_dir / LAST_CHECKPOINT

    @property
    def metrics_dir(self) -> Path:
        return self.root / METRICS_DIR

    @property
    def probes_table(self) -> Path:
        return self.metrics_dir / PROBES_TABLE

    @property
    def reanalysis_table(self) -> Path:
        return self.metrics_dir / REANALYSIS_TABLE

    def table(self, name: str) -> Path:
        """A metric table by its short name: `probes` or `reanalysis`."""
        return self.metrics_dir / TABLES[name]

    @property
    def csv_dir(self) -> Path:
        return self.root / CSV_DIR

    @property
    def safetensors(self) -> Path:
        return self.root / SAFETENSORS_FILE

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY_FILE

    @property
    def wandb_id(self) -> Path:
        return self.root / WANDB_ID_FILE


def is_run_dir(path: Path) -> bool:
    """A sinklab run folder holds its probe set (and usually checkpoints/)."""
    return RunLayout(path).probe_ids.is_file()


def job_dirs(multirun: Path) -> list[Path]:
    """The run folders directly below a multirun folder, in job-number order (`2_...` before
    `10_...`), whether the folders are named `<num>` or `<num>_<overrides>`."""
    jobs = [p for p in Path(multirun).iterdir() if p.is_dir() and is_run_dir(p)]
    return sorted(jobs, key=_job_order)


def _job_order(path: Path) -> tuple[int, int, str]:
    number = job_number(path)
    return (0, number, path.name) if number is not None else (1, 0, path.name)


def job_number(run_dir: Path) -> int | None:
    """The Hydra job number a sweep folder's name starts with (`3_model.pos=alibi` -> 3)."""
    head = Path(run_dir).name.split("_", 1)[0]
    return int(head) if head.isdigit() else None


# Overrides that say where or how a job ran, not what it is: left out of job names and labels
# (a sweep's folder names then differ only in what the sweep varies, plus shared overrides).
BOOKKEEPING_KEYS = frozenset(
    {
        "ckpt_path",
        "logger",
        "trainer.progress_bar",
        "trainer.threads",
        "paths.output_dir",
        "paths.cache_dir",
    }
)
# Long enough for a few overrides, short enough for a terminal column and any file system.
JOB_NAME_MAX = 96
JOB_NAME_RESOLVER = "sinklab_job_dir"
NO_OVERRIDES = "(no overrides)"
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,+@%-]+")


def override_key(override: str) -> str:
    """`+model.x=1` / `~model.x` / `model.x=1` -> `model.x`."""
    return override.lstrip("+~").split("=", 1)[0].strip()


def job_overrides(overrides: Iterable[str]) -> list[str]:
    """A job's own overrides, sorted, without the bookkeeping ones or Hydra's own."""
    kept = []
    for item in overrides:
        key = override_key(str(item))
        if key in BOOKKEEPING_KEYS or key.startswith("hydra") or not key:
            continue
        kept.append(str(item))
    return sorted(kept)


def job_dir_name(num: int | str, overrides: Iterable[str]) -> str:
    """A sweep job's folder name: `<num>_<overrides>` (`0_model.pos=alibi`), characters a path
    cannot hold turned into `-`, and a long tail cut and replaced by a short hash of the whole,
    so the name stays one folder, under JOB_NAME_MAX characters, and still distinct."""
    label = ",".join(job_overrides(overrides))
    if not label:
        return str(num)
    safe = _UNSAFE.sub("-", label).strip("-.") or "overrides"
    name = f"{num}_{safe}"
    if len(name) > JOB_NAME_MAX:
        digest = hashlib.sha1(label.encode()).hexdigest()[:8]
        name = f"{name[: JOB_NAME_MAX - len(digest) - 1]}~{digest}"
    return name


def _resolve_job_dir_name(num: object, overrides: object) -> str:
    """The `${sinklab_job_dir:...}` resolver behind `hydra.sweep.subdir` (conf/train.yaml)."""
    items = OmegaConf.to_container(overrides) if OmegaConf.is_list(overrides) else overrides
    return job_dir_name(str(num), items or [])  # type: ignore[arg-type]


def register_job_dir_resolver() -> None:
    """Teach OmegaConf the resolver conf/train.yaml's sweep subdir names jobs with. Hydra
    resolves that subdir in the job's process (a joblib or SLURM worker too), after it imports
    the task function's module, which imports this one: so registering at import suffices."""
    if not OmegaConf.has_resolver(JOB_NAME_RESOLVER):
        OmegaConf.register_new_resolver(JOB_NAME_RESOLVER, _resolve_job_dir_name)


register_job_dir_resolver()


def job_label(run_dir: Path) -> str:
    """What a run or sweep job is, for a person: its own overrides, space-separated as typed
    (`model.pos=alibi optim.lr=0.003`), read from `.hydra/overrides.yaml`; NO_OVERRIDES for a
    run with none, and the folder's name for a folder Hydra did not write."""
    items = saved_overrides(run_dir)
    if items is None:
        return Path(run_dir).name
    return " ".join(items) or NO_OVERRIDES


def saved_overrides(run_dir: Path) -> list[str] | None:
    """The run's own overrides (`job_overrides` of `.hydra/overrides.yaml`); None without one."""
    path = RunLayout(run_dir).hydra_overrides
    if not path.is_file():
        return None
    return job_overrides(yaml.safe_load(path.read_text()) or [])
