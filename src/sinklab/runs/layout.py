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

from dataclasses import dataclass
from pathlib import Path

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
    """The run folders directly below a multirun folder, in job-number order."""
    jobs = [p for p in Path(multirun).iterdir() if p.is_dir() and is_run_dir(p)]
    return sorted(jobs, key=lambda p: (0, int(p.name)) if p.name.isdigit() else (1, p.name))
