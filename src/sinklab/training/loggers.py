"""Loggers: W&B (offline unless a key or WANDB_MODE says otherwise), CSV, or none.

W&B pitfalls handled here: `log_model` stays off (it raises with offline runs), every run is
finished in `finish_loggers` (called from a `finally`, so each job of a multirun gets its own
run), and values are only logged at the trainer's global step. The run id is kept in the run
folder (`wandb_id.txt`), so a resumed or requeued run continues the same W&B run.

What W&B shows (`SinklabWandbLogger`; docs/wandb.md has the panel layout): the CSV keeps one
column per metric and layer, but on W&B that is hundreds of panels. So there, per-layer values
go into one table per probe (`layers/table`, and `layers/history` with every probe at the end)
and into one line-series chart per key metric with a line per layer; integer codes (channels,
positions, frame classes) go into a table, never a curve; of the whole-model scalars only
KEY_SCALARS are plotted automatically, the others are logged hidden (add them to a panel by
name). The run config is our resolved config only.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import Logger, WandbLogger

from sinklab.atomic import atomic_write
from sinklab.runs.layout import RunLayout
from sinklab.training.config import LoggerConfig
from sinklab.training.csv_log import SafeCSVLogger

__all__ = [
    "LoggerConfig",
    "SinklabWandbLogger",
    "build_loggers",
    "finish_loggers",
    "split_for_wandb",
    "wandb_mode",
    "wandb_run_id",
]

# The whole-model scalars W&B plots by itself (with the line-series charts and tables below:
# under 30 panels); a trailing "/" matches a family (the variants' slot masses).
KEY_SCALARS = (
    "train/loss",
    "val/loss",
    "train/lr",
    "train/grad_norm",
    "train/tokens_per_s",
    "train/skipped_batches",
    "sink/sink1_pct",
    "sink/sink_ratio_pct",
    "sink/first_token_mass",
    "sink/alpha_0_max",
    "stream/ratio/window_shift",
    "stream/ratio/sinks4_shift",
    "stream/ppl/recompute",
    "quant/ppl/fp",
    "quant/ppl_increase/per_tensor_static",
    "quant/ppl_increase/per_token_dynamic",
    "intervention/no_sink/ppl_ratio",
    "intervention/massive_zero/ppl_ratio",
    "outliers/resid_post/max_abs",
    "slot_mass/",
    "probe/attention_maps",
)
# Per-layer metrics drawn as one chart with a line per layer (`layers/<metric>`).
LAYER_CHARTS = (
    "sink/sink1_pct",
    "sink/first_token_mass",
    "massive/top1_over_median",
    "massive/top1",
)
# Integer codes and 0/1 flags: a curve between channel 17 and channel 3 means nothing.
INTEGER_CODES = re.compile(
    r"^(massive/top\d+_(position|channel)|spike/channel/rank_\d+|frames/class"
    r"|frames/ref_position/rank_\d+|frames/ref_fallback|sink/proxy_scores|quant/bits)$"
)
_LAYER_KEY = re.compile(r"^(?P<metric>.+)/layer_(?P<layer>\d+)$")
STEP_KEY = "trainer/global_step"  # Lightning's x axis for every W&B key
LAYER_COLUMNS = ["step", "metric", "layer", "value"]


def is_key_scalar(key: str) -> bool:
    return any(key == k or (k.endswith("/") and key.startswith(k)) for k in KEY_SCALARS)


@dataclass
class WandbSplit:
    """One `log_metrics` call sorted for W&B: plain curves, per-layer rows, integer-code rows
    (rows are (metric, layer, value); layer -1 is the whole model)."""

    scalars: dict[str, float] = field(default_factory=dict)
    layer_rows: list[tuple[str, int, float]] = field(default_factory=list)
    code_rows: list[tuple[str, int, float]] = field(default_factory=list)


def split_for_wandb(metrics: Mapping[str, Any]) -> WandbSplit:
    """Sort the flat keys `logger_scalars` makes (`<metric>` and `<metric>/layer_<l>`)."""
    out = WandbSplit()
    for key, value in metrics.items():
        match = _LAYER_KEY.match(key)
        metric, layer = (match["metric"], int(match["layer"])) if match else (key, -1)
        if INTEGER_CODES.match(metric):
            out.code_rows.append((metric, layer, float(value)))
        elif match:
            out.layer_rows.append((metric, layer, float(value)))
        else:
            out.scalars[key] = value
    return out


class SinklabWandbLogger(WandbLogger):
    """Lightning's WandbLogger, with what W&B shows sorted as the module docstring says."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # Lightning always passes anonymous=None, which wandb >= 0.19 warns about on every run.
        self._wandb_init.pop("anonymous", None)
        self._layer_history: list[list[Any]] = []
        self._code_history: list[list[Any]] = []
        self._shown: set[str] = set()

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing: the run config is our resolved config, given to wandb.init; Lightning would
        add the module's and data module's hyperparameters as loose top-level keys."""

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        from lightning.fabric.utilities.rank_zero import rank_zero_only

        if getattr(rank_zero_only, "rank", 0) != 0:
            return
        import wandb

        split = split_for_wandb(metrics)
        payload: dict[str, Any] = dict(split.scalars)
        self._hide_new_keys(split.scalars)
        if split.layer_rows:
            rows = [[step, m, layer, v] for m, layer, v in split.layer_rows]
            self._layer_history.extend(rows)
            payload["layers/table"] = wandb.Table(columns=LAYER_COLUMNS, data=rows)
            updated = {m for m, _, _ in split.layer_rows}
            for metric in LAYER_CHARTS:
                if metric in updated:
                    payload[f"layers/{metric}"] = self._layer_chart(metric)
        if split.code_rows:
            self._code_history.extend([step, m, layer, v] for m, layer, v in split.code_rows)
            payload["codes/table"] = wandb.Table(columns=LAYER_COLUMNS, data=self._code_history)
        if payload:
            super().log_metrics(payload, step)

    def _hide_new_keys(self, scalars: Mapping[str, Any]) -> None:
        """Log every scalar, but let W&B plot only KEY_SCALARS by itself."""
        for key in scalars:
            if key in self._shown:
                continue
            self._shown.add(key)
            if not is_key_scalar(key):
                self.experiment.define_metric(
                    key, step_metric=STEP_KEY, step_sync=True, hidden=True
                )

    def _layer_chart(self, metric: str) -> Any:
        """Every probe so far of `metric`, one line per layer, x = optimizer steps."""
        import wandb

        from sinklab.analysis.registry import describe

        by_layer: dict[int, list[tuple[int, float]]] = {}
        for step, m, layer, value in self._layer_history:
            if m == metric:
                by_layer.setdefault(layer, []).append((step, value))
        layers = sorted(by_layer)
        return wandb.plot.line_series(
            xs=[[s for s, _ in by_layer[layer]] for layer in layers],
            ys=[[v for _, v in by_layer[layer]] for layer in layers],
            keys=[f"layer {layer}" for layer in layers],
            title=f"{metric} by layer: {short_description(describe(metric))}",
            xname="step",
        )

    def finalize(self, status: str) -> None:
        """At the end: every probe's per-layer rows in one table (`layers/history`)."""
        from lightning.fabric.utilities.rank_zero import rank_zero_only

        if self._layer_history and self._experiment is not None and rank_zero_only.rank == 0:
            import wandb

            self._experiment.log(
                {"layers/history": wandb.Table(columns=LAYER_COLUMNS, data=self._layer_history)}
            )
        super().finalize(status)


def short_description(text: str, limit: int = 60) -> str:
    """A registry definition cut for a title: its first clause, at most `limit` characters."""
    head = re.split(r"[:;(]", text, maxsplit=1)[0].strip().rstrip(".")
    return head if len(head) <= limit else head[: limit - 3].rstrip() + "..."


def wandb_run_id(run_dir: Path, write: bool = True) -> str:
    """The run folder's W&B id: read from `wandb_id.txt`, or made up and saved there (by rank 0
    only: `write=False` on the other ranks, whose loggers never open a W&B run)."""
    path = RunLayout(run_dir).wandb_id
    if path.is_file():
        saved = path.read_text().strip()
        if saved:
            return saved
    run_id = uuid.uuid4().hex[:12]  # W&B ids: lowercase letters and digits
    if write:
        atomic_write(path, lambda fh: fh.write(run_id.encode()))
    return run_id


def wandb_mode(cfg: LoggerConfig, environ: dict[str, str] | None = None) -> str:
    """Offline by default; online only when asked or when an API key is present."""
    environ = os.environ if environ is None else environ
    if cfg.mode:
        return cfg.mode
    if environ.get("WANDB_MODE"):
        return environ["WANDB_MODE"]
    return "online" if environ.get("WANDB_API_KEY") else "offline"


def build_loggers(
    cfg: LoggerConfig,
    run_dir: Path,
    group: str,
    name: str,
    config: dict[str, Any],
    resume_step: int = 0,
) -> list[Logger]:
    """The configured loggers; `resume_step` > 0 keeps metrics.csv rows from before that step."""
    loggers: list[Logger] = []
    if cfg.kind == "wandb":
        from lightning.fabric.utilities.rank_zero import rank_zero_only

        mode = wandb_mode(cfg)
        run_id = wandb_run_id(run_dir, write=getattr(rank_zero_only, "rank", 0) == 0)
        loggers.append(
            SinklabWandbLogger(
                id=run_id,
                resume="allow",  # a new id starts a run; a saved one continues it
                project=cfg.project,
                entity=cfg.entity,
                group=cfg.group or group,
                name=cfg.name or name,
                save_dir=str(run_dir),
                offline=mode == "offline",
                mode=mode,
                tags=list(cfg.tags),
                log_model=False,
                config=config,
            )
        )
    if cfg.kind == "csv" or (cfg.kind == "wandb" and cfg.csv):
        loggers.append(SafeCSVLogger(save_dir=str(run_dir), resume_step=resume_step))
    return loggers


def finish_loggers() -> None:
    """Close the W&B run, if one is open, so the next job of a multirun starts its own."""
    try:
        import wandb
    except ImportError:  # pragma: no cover - wandb is a dependency
        return
    if wandb.run is not None:
        wandb.finish()
