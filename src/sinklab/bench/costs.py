"""What measuring costs: one probe pass, the probes' share of a run, and reanalysis.

The probe pass is timed through the very call the training callback makes
(`measure_probe_set`), and reanalysis through the very calls the reanalysis script makes
(`load_checkpoint_model` then `measure_probe_set`), so these figures are what a run pays.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from sinklab.analysis import MetricsConfig
from sinklab.analysis.pipeline import measure_probe_set
from sinklab.bench.rss import rss_bytes
from sinklab.bench.timing import Summary, linear_fit, summarize, timed
from sinklab.data import ProbeSet
from sinklab.runs.checkpoints import load_checkpoint_model
from sinklab.runs.schedule import log_spaced_steps


def probe_pass_seconds(
    model: torch.nn.Module,
    probe_set: ProbeSet,
    metrics: MetricsConfig,
    batch_size: int,
    repeats: int,
    measure_on: str = "device",
) -> Summary:
    """Wall time of one full probe pass (capture + every metric), after one warm-up pass;
    the metric maths where the probe callback runs it by default (the model's device)."""
    return timed(
        lambda: measure_probe_set(
            model, probe_set, metrics, batch_size=batch_size, measure_on=measure_on
        ),
        repeats,
    )


@dataclass
class RunProjection:
    """A full default run's wall time, assembled from measured per-event costs."""

    steps: int
    n_probes: int
    n_checkpoints: int
    n_validations: int
    step_s: float
    probe_s: float
    checkpoint_s: float
    validation_s: float

    @property
    def total_s(self) -> float:
        return (
            self.steps * self.step_s
            + self.n_probes * self.probe_s
            + self.n_checkpoints * self.checkpoint_s
            + self.n_validations * self.validation_s
        )

    @property
    def probe_share(self) -> float:
        return self.n_probes * self.probe_s / self.total_s


def project_default_run(
    max_steps: int,
    probe_schedule: tuple[int, int],
    checkpoint_schedule: tuple[int, int] | None,
    val_every: int,
    *,
    step_s: float,
    probe_s: float,
    checkpoint_s: float,
    validation_s: float,
) -> RunProjection:
    """Count the scheduled events of a `max_steps` run (Pythia log-spaced, then every K) and
    weigh each by its measured cost. Schedules are (log_spaced_until, every)."""
    n_probes = len(log_spaced_steps(max_steps, *probe_schedule))
    n_ckpt = len(log_spaced_steps(max_steps, *checkpoint_schedule)) if checkpoint_schedule else 0
    return RunProjection(
        steps=max_steps,
        n_probes=n_probes,
        n_checkpoints=n_ckpt,
        n_validations=max_steps // val_every,
        step_s=step_s,
        probe_s=probe_s,
        checkpoint_s=checkpoint_s,
        validation_s=validation_s,
    )


@dataclass
class ReanalysisCost:
    seconds: list[float]  # per checkpoint, in order
    rss_mb: list[float]  # current RSS after each checkpoint

    @property
    def per_checkpoint(self) -> Summary:
        return summarize(self.seconds)

    @property
    def slope_s_per_checkpoint(self) -> float:
        """Slope of cumulative time against the count: constant cost per checkpoint is linear.
        A single checkpoint has no slope (NaN), as it has no late half either."""
        if len(self.seconds) < 2:
            return float("nan")
        cumulative = [sum(self.seconds[: i + 1]) for i in range(len(self.seconds))]
        return linear_fit(list(range(1, len(cumulative) + 1)), cumulative)[0]

    @property
    def late_over_early(self) -> float:
        """Median cost of the second half over the first: about 1 when growth is linear."""
        half = len(self.seconds) // 2
        if half == 0:
            return float("nan")
        return summarize(self.seconds[half:]).median / summarize(self.seconds[:half]).median

    @property
    def rss_growth_mb(self) -> float:
        """RSS after the last checkpoint minus after the first (flat memory: about 0)."""
        return self.rss_mb[-1] - self.rss_mb[0]


def reanalysis_cost(
    checkpoints: Sequence[Path],
    probe_set: ProbeSet,
    metrics: MetricsConfig,
    batch_size: int,
    count: int,
) -> ReanalysisCost:
    """Load and measure `count` checkpoints one after another (cycling through the list when
    `count` is larger), as reanalysing a run does; nothing is kept between checkpoints."""
    if not checkpoints:
        raise ValueError("no checkpoints to reanalyse")
    seconds, rss = [], []
    for i in range(count):
        path = checkpoints[i % len(checkpoints)]
        start = time.perf_counter()
        model, _info = load_checkpoint_model(path)
        rows, _probe = measure_probe_set(model, probe_set, metrics, batch_size=batch_size)
        seconds.append(time.perf_counter() - start)
        del model, rows, _probe
        gc.collect()
        rss.append(rss_bytes() / 2**20)
    return ReanalysisCost(seconds=seconds, rss_mb=rss)
