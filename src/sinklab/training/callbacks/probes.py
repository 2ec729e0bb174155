"""The probe callback: measure sinks and massive activations on the run's fixed probe set at
every scheduled step, append tidy rows to `<run>/metrics/probes.parquet`, and log the
aggregate curves (and, on W&B, pictures) to the logger. With `callbacks.probe.stream` on, it
also runs the streaming evaluation (`analysis.streaming.stream_eval`) on the run's saved
held-out stream, at every probe or every n-th one, into the same table; with
`callbacks.probe.quant` on, the fake-quantised W8A8 evaluation (and prefixed sinks) on the
run's saved windows at its own steps (`ProbeQuantConfig.due`).

It calls the same `sinklab.analysis` functions as the reanalysis script, so a checkpoint
re-measured later gives the numbers logged here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch

from sinklab.analysis import MetricsConfig, logger_scalars
from sinklab.analysis.pipeline import measure_probe_set
from sinklab.analysis.records import TableAppender, read_rows, tag_rows
from sinklab.analysis.streaming import StreamConfig, stream_eval, streams_at
from sinklab.atomic import atomic_write
from sinklab.data import ProbeSet
from sinklab.errors import ConfigError, check
from sinklab.runs.checkpoints import checkpoint_name
from sinklab.runs.layout import RunLayout
from sinklab.runs.schedule import is_scheduled, log_spaced_steps
from sinklab.training.config import ProbeQuantConfig, ProbeScheduleConfig
from sinklab.training.full_params import rank0_model

log = logging.getLogger(__name__)

# Stream rows that go to the logger: the model-level curves, not the per-bucket NLL or lengths.
_LOGGED_STREAM = ("stream/ppl/", "stream/ppl_all/", "stream/ratio/")


@dataclass(frozen=True)
class StreamInput:
    """What the streaming evaluation runs on: the resolved config and the run's stream [T]."""

    cfg: StreamConfig
    ids: torch.Tensor


def stream_input(data: Any, probe: ProbeScheduleConfig, seq_len: int) -> StreamInput | None:
    """The run's stream (built and saved by `RunData.stream_ids`, or loaded on resume) with
    its resolved config; None when the probe or the streaming evaluation is off."""
    if not (probe.enabled and probe.stream.enabled):
        return None
    cfg = probe.stream.resolved(seq_len)
    assert cfg.stream_len is not None
    ids = data.stream_ids(cfg.stream_len)
    return StreamInput(shorter_stream(cfg, len(ids), "callbacks.probe.stream.stream_len"), ids)


@dataclass(frozen=True)
class QuantInput:
    """What the W8A8 evaluation runs on: its config and the run's saved windows
    (`RunData.quant_ids`: evaluation windows, calibration batches, BOS id)."""

    cfg: ProbeQuantConfig
    ids: Any


def quant_input(data: Any, probe: ProbeScheduleConfig) -> QuantInput | None:
    """The run's W8A8 evaluation inputs (built and saved, or loaded on resume); None when off.
    The `bos` prefix without a BOS token is refused here, before training starts."""
    if not (probe.enabled and probe.quant.enabled):
        return None
    qcfg = probe.quant
    ids = data.quant_ids(qcfg.eval_windows, qcfg.calibration_batches)
    if qcfg.prefixes:
        try:
            qcfg.prefix(ids.bos_id).check_bos()
        except ConfigError as err:
            raise ConfigError("callbacks.probe.quant.prefixes", str(err)) from None
    return QuantInput(qcfg, ids)


def quant_scalars(rows: pd.DataFrame) -> dict[str, float]:
    """The logger's share of the quant rows: `quant/ppl_increase/{mode}` (and per prefix)."""
    keep = rows[rows["metric"].str.contains("ppl_increase/", regex=False)]
    return logger_scalars(keep)


def shorter_stream(cfg: StreamConfig, length: int, key: str) -> StreamConfig:
    """`cfg` with T = `length` when the stream came out shorter (a small validation split);
    a ConfigError naming `key` when it does not exceed the cache."""
    if length == cfg.stream_len:
        return cfg
    check(
        length > (cfg.cache_len or 0),
        key,
        f"the evaluation stream has only {length} tokens (a small validation split), not more "
        f"than the cache ({cfg.cache_len}); lower cache_len or raise data.val_fraction",
    )
    return replace(cfg, stream_len=length)


def stream_scalars(rows: pd.DataFrame) -> dict[str, float]:
    """The logger's share of the stream rows (`stream/ratio/window_shift`, ...)."""
    keep = rows[rows["metric"].str.startswith(_LOGGED_STREAM)]
    return logger_scalars(keep)


def drop_rows_after(table: Path, step: int) -> int:
    """Remove rows measured after `step` (atomically); returns how many were dropped.

    A run killed after its last checkpoint may have probed further; resuming from that
    checkpoint re-measures those steps, identically, so the old rows would be duplicates.
    """
    if not table.exists():
        return 0
    rows = read_rows(table)
    keep = rows[rows["step"] <= step]
    if len(keep) == len(rows):
        return 0
    atomic_write(table, lambda fh: keep.to_parquet(fh, index=False))
    return len(rows) - len(keep)


class ProbeCallback(L.Callback):
    """Probes at the scheduled steps. Put it before the checkpoint callback: at a step with
    both, the rows are on disk before the checkpoint, so a checkpoint always implies its probe."""

    def __init__(
        self,
        run_dir: Path,
        probe_set: ProbeSet,
        cfg: ProbeScheduleConfig,
        metrics_cfg: MetricsConfig,
        max_steps: int,
        run_id: str,
        config_hash: str,
        checkpoint_steps: set[int] | None = None,
        stream: StreamInput | None = None,
        quant: QuantInput | None = None,
    ) -> None:
        self.table = RunLayout(run_dir).probes_table
        self._appender = TableAppender(self.table)
        self.probe_set = probe_set
        self.cfg = cfg
        self.metrics_cfg = metrics_cfg
        self.max_steps = max_steps
        self.run_id = run_id
        self.config_hash = config_hash
        self.checkpoint_steps = checkpoint_steps or set()
        self.stream = stream
        self.quant = quant
        # the probe schedule's steps, so "every n-th probe" survives a resume unchanged
        self._probe_steps = log_spaced_steps(max_steps, cfg.log_spaced_until, cfg.every)
        self._last_step: int | None = None
        self.seconds = 0.0
        self.stream_seconds = 0.0
        self.stream_runs = 0
        self.quant_seconds = 0.0
        self.quant_runs = 0
        self.history: dict[int, dict[str, float]] = {}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Import the picture code now if the run will log pictures: a one-time cost of the
        run (about 1 s for matplotlib and PIL) that would otherwise land in the first probe
        and count as probe time."""
        if self.cfg.images and trainer.is_global_zero and self._wandb_loggers(trainer):
            import PIL.Image  # noqa: F401 - wandb.Image's encoder

            import sinklab.reports.plots  # noqa: F401 - matplotlib

    @staticmethod
    def _wandb_loggers(trainer: L.Trainer) -> list[Any]:
        from lightning.pytorch.loggers import WandbLogger

        return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step == 0 and trainer.ckpt_path is None:  # a resume may start at 0
            self._probe(trainer, pl_module)
        else:  # resumed: the probe runs before the checkpoint, so this step is already measured
            self._last_step = trainer.global_step
            if trainer.is_global_zero:
                drop_rows_after(self.table, trainer.global_step)
                self._appender.forget()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object
    ) -> None:
        step = trainer.global_step
        if step != self._last_step and is_scheduled(
            step, self.max_steps, self.cfg.log_spaced_until, self.cfg.every
        ):
            self._probe(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._last_step:
            self._probe(trainer, pl_module)
        if self.stream is not None and trainer.is_global_zero:
            log.info(
                "probes %.2f s, of which the streaming evaluation %.2f s (%d runs)",
                self.seconds,
                self.stream_seconds,
                self.stream_runs,
            )
        if self.quant is not None and trainer.is_global_zero:
            log.info("W8A8 evaluation %.2f s (%d runs)", self.quant_seconds, self.quant_runs)

    def streams_at(self, step: int) -> bool:
        """Whether the probe at `step` also runs the streaming evaluation (`streams_at`)."""
        if self.stream is None:
            return False
        return streams_at(step, self._probe_steps, self.stream.cfg.every_n_probes, self.max_steps)

    def quant_at(self, step: int) -> bool:
        """Whether the probe at `step` also runs the W8A8 evaluation (`ProbeQuantConfig.due`)."""
        if self.quant is None:
            return False
        return self.quant.cfg.due(step, self.max_steps, self.cfg.log_spaced_until, self.cfg.every)

    def _probe(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        self._last_step = step
        start = time.perf_counter()  # an FSDP gather counts as probe time
        model = rank0_model(trainer, pl_module)  # FSDP: every rank joins the gather
        if model is None:  # not rank 0
            return
        rows, probe = measure_probe_set(
            model,
            self.probe_set,
            self.metrics_cfg,
            batch_size=self.cfg.batch_size,
            device=pl_module.device,
            measure_on=self.cfg.measure_on,
        )
        stream_rows = None
        if self.streams_at(step):
            started = time.perf_counter()
            assert self.stream is not None
            stream_rows = stream_eval(model, self.stream.ids, self.stream.cfg)
            self.stream_seconds += time.perf_counter() - started
            self.stream_runs += 1
            rows = pd.concat([rows, stream_rows], ignore_index=True)
        if self.quant_at(step):  # after the stream rows, as sinklab-analyze appends them
            started = time.perf_counter()
            assert self.quant is not None
            ids = self.quant.ids
            quant_rows = self.quant.cfg.evaluate(model, ids.eval_ids, ids.calib, ids.bos_id)
            self.quant_seconds += time.perf_counter() - started
            self.quant_runs += 1
            rows = pd.concat([rows, quant_rows], ignore_index=True)
        tokens = pl_module.tokens_seen
        ckpt = checkpoint_name(step, tokens) if step in self.checkpoint_steps else ""
        rows = tag_rows(
            rows,
            run_id=self.run_id,
            step=step,
            tokens_seen=tokens,
            config_hash=self.config_hash,
            checkpoint=ckpt,
        )
        self._appender.append(rows)
        is_stream = rows["metric"].str.startswith("stream/")
        is_quant = rows["metric"].str.startswith("quant/")
        scalars = {
            **logger_scalars(rows[~is_stream & ~is_quant]),
            **stream_scalars(rows[is_stream]),
            **quant_scalars(rows[is_quant]),
        }
        self.history[step] = scalars
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)
        if self.cfg.images:
            self._log_images(trainer, probe, step)
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        pl_module.overhead_seconds += elapsed

    def _log_images(self, trainer: L.Trainer, probe: Any, step: int) -> None:
        wandb_loggers = self._wandb_loggers(trainer)
        if not wandb_loggers:
            return
        from sinklab.reports.plots import attention_maps_image, head_averaged_patterns

        maps = head_averaged_patterns(probe)
        image = attention_maps_image(maps)
        caption = f"step {step}: head-averaged attention, layers 0-{len(maps) - 1} left to right"
        for lg in wandb_loggers:
            lg.log_image("probe/attention_maps", [image], step=step, caption=[caption])
