"""The probe callback: at every scheduled step, one probe pass (`analysis.probe_pass`) on the
run's fixed probe set: the sink and massive-activation metrics, plus the optional evaluations
the config turns on (`probe_evaluations`): the streaming evaluation on the run's saved
held-out stream (`callbacks.probe.stream`) and the fake-quantised W8A8 evaluation (and
prefixed sinks) on the run's saved windows (`callbacks.probe.quant`), each on its own
schedule. Rows are appended to `<run>/metrics/probes.parquet`, the aggregate curves (and, on
W&B, pictures) go to the logger.

The reanalysis script runs the same pass, so a checkpoint re-measured later gives the numbers
logged here.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L

from sinklab.analysis import MetricsConfig
from sinklab.analysis.pipeline import head_averaged_patterns
from sinklab.analysis.probe_pass import (
    Evaluation,
    intervention_evaluation,
    on_schedule,
    pass_scalars,
    quant_evaluation,
    run_probe_pass,
    stream_evaluation,
)
from sinklab.analysis.records import TableAppender, read_rows
from sinklab.analysis.streaming import StreamConfig
from sinklab.atomic import atomic_write
from sinklab.data import ProbeSet
from sinklab.errors import check
from sinklab.runs.checkpoints import checkpoint_name
from sinklab.runs.layout import RunLayout
from sinklab.runs.schedule import is_scheduled
from sinklab.training.config import ProbeScheduleConfig
from sinklab.training.full_params import rank0_model

log = logging.getLogger(__name__)

# Above this share of a run's time, the probes say how to thin them (a short run's are mostly
# its first and last probes, each with its streaming, W8A8 and intervention evaluations).
HEAVY_PROBE_SHARE = 0.10
THINNING = (
    "fewer: callbacks.probe.every=<steps> callbacks.probe.log_spaced_until=0; lighter: "
    "callbacks.probe.stream.enabled=false callbacks.probe.quant.enabled=false "
    "callbacks.probe.interventions.enabled=false; none: callbacks.probe.enabled=false"
)


def thinning_hint(probe_share: float) -> str | None:
    """One line saying how to thin the probes when they took more than `HEAVY_PROBE_SHARE` of
    the run (`probe_share`: their seconds over the fit's, evaluations included); else None."""
    if probe_share <= HEAVY_PROBE_SHARE:
        return None
    return f"probes took {100 * probe_share:.0f} % of this run; {THINNING}"


def probe_evaluations(
    data: Any, probe: ProbeScheduleConfig, seq_len: int, max_steps: int
) -> list[Evaluation]:
    """The optional evaluations `probe` turns on, on the run's saved inputs (built and saved
    by `RunData`, or loaded on resume), each on its own schedule; refused before training
    starts when an input is unusable (a stream no longer than the cache, `bos` without BOS)."""
    if not probe.enabled:
        return []
    due = {"max_steps": max_steps, "log_spaced_until": probe.log_spaced_until, "every": probe.every}
    out = []
    if probe.stream.enabled:
        cfg = probe.stream.resolved(seq_len)
        assert cfg.stream_len is not None
        ids = data.stream_ids(cfg.stream_len)
        cfg = shorter_stream(cfg, len(ids), "callbacks.probe.stream.stream_len")
        out.append(stream_evaluation(cfg, ids, on_schedule(probe.stream, **due)))
    if probe.quant.enabled:
        qcfg = probe.quant
        qids = data.quant_ids(qcfg.eval_windows, qcfg.quantizer.calibration_batches)
        if qcfg.prefix.prefixes:
            qcfg.check_bos(qids.bos_id)
        out.append(quant_evaluation(qcfg, qids, on_schedule(qcfg, **due)))
    if probe.interventions.enabled and probe.metrics.interventions:
        icfg = probe.interventions
        out.append(intervention_evaluation(icfg, probe.metrics, on_schedule(icfg, **due)))
    return out


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
        evaluations: list[Evaluation] | None = None,
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
        self.evaluations = evaluations or []
        self._last_step: int | None = None
        self.seconds = 0.0
        self.eval_seconds: Counter[str] = Counter()  # evaluation name -> seconds, runs
        self.eval_runs: Counter[str] = Counter()
        self.history: dict[int, dict[str, float]] = {}
        self._fit_start: float | None = None

    @property
    def quant_seconds(self) -> float:
        """The W8A8 evaluations' time, reported apart (their schedule is sparser)."""
        return self.eval_seconds["quant"]

    @property
    def intervention_seconds(self) -> float:
        """The interventions' time, reported apart like the W8A8 evaluations'."""
        return self.eval_seconds["intervention"]

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
        self._fit_start = time.perf_counter()  # before the first probe: it is part of the run
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
        if self.evaluations and trainer.is_global_zero:
            log.info(
                "probes %.2f s, of which %s",
                self.seconds,
                ", ".join(
                    f"{ev.name} {self.eval_seconds[ev.name]:.2f} s ({self.eval_runs[ev.name]} runs)"
                    for ev in self.evaluations
                ),
            )
        hint = thinning_hint(self.share())
        if hint and trainer.is_global_zero:
            log.info(hint)

    def share(self) -> float:
        """The probes' share of this run's time so far (0 before it starts)."""
        if self._fit_start is None:
            return 0.0
        elapsed = time.perf_counter() - self._fit_start
        return self.seconds / elapsed if elapsed > 0 else 0.0

    def _probe(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        step = trainer.global_step
        self._last_step = step
        start = time.perf_counter()  # an FSDP gather counts as probe time
        model = rank0_model(trainer, pl_module)  # FSDP: every rank joins the gather
        if model is None:  # not rank 0
            return
        tokens = pl_module.tokens_seen
        result = run_probe_pass(
            model,
            self.probe_set,
            self.metrics_cfg,
            self.evaluations,
            step=step,
            batch_size=self.cfg.batch_size,
            device=pl_module.device,
            measure_on=self.cfg.measure_on,
            tags={
                "run_id": self.run_id,
                "step": step,
                "tokens_seen": tokens,
                "config_hash": self.config_hash,
                "checkpoint": checkpoint_name(step, tokens)
                if step in self.checkpoint_steps
                else "",
            },
        )
        self.eval_seconds.update(result.seconds)
        self.eval_runs.update(result.seconds.keys())
        self._appender.append(result.rows)
        scalars = pass_scalars(result.rows, self.evaluations)
        self.history[step] = scalars
        for logger in trainer.loggers:
            logger.log_metrics(scalars, step=step)
        if self.cfg.images:
            self._log_images(trainer, result.probe, step)
        elapsed = time.perf_counter() - start
        self.seconds += elapsed
        pl_module.overhead_seconds += elapsed

    def _log_images(self, trainer: L.Trainer, probe: Any, step: int) -> None:
        wandb_loggers = self._wandb_loggers(trainer)
        if not wandb_loggers:
            return
        from sinklab.reports.plots import attention_maps_image

        maps = head_averaged_patterns(probe)
        image = attention_maps_image(maps)
        caption = f"step {step}: head-averaged attention, layers 0-{len(maps) - 1} left to right"
        for lg in wandb_loggers:
            lg.log_image("probe/attention_maps", [image], step=step, caption=[caption])
