"""sinklab's own training path, timed from the inside without changing what it runs.

`train(run, run_dir)` builds its callbacks itself, so the benchmark cannot hand it an extra
one. Instead, for the duration of one call, the name `ThroughputMonitor` in
`sinklab.training.run` is pointed at `StepClock`, a subclass that behaves identically and
also stamps the time, the probe/checkpoint overhead and the validation time at every
optimizer step. The Trainer, the module, the data module, the loggers and the default
callbacks are exactly those of `sinklab-train`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L

import sinklab.training.run as run_module
from sinklab.bench.timing import Stamp, sync
from sinklab.training.callbacks import ThroughputMonitor
from sinklab.training.run import RunConfig, RunResult, train


@dataclass
class Mark:
    step: int
    stamp: Stamp
    overhead: float  # probe + checkpoint seconds so far (SinkLabModule.overhead_seconds)
    validation: float  # validation seconds so far


class StepClock(ThroughputMonitor):
    """ThroughputMonitor plus a per-step record; instances register themselves in `created`."""

    created: list[StepClock] = []

    def __init__(self) -> None:
        super().__init__()
        self.marks: list[Mark] = []
        self.validation_seconds = 0.0
        self.validation_runs = 0
        self._val_start = 0.0
        StepClock.created.append(self)

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, *args)
        sync(pl_module.device)
        self.marks.append(
            Mark(
                trainer.global_step,
                Stamp.now(),
                pl_module.overhead_seconds,
                self.validation_seconds,
            )
        )

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._val_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.validation_seconds += time.perf_counter() - self._val_start
        self.validation_runs += 1


@contextlib.contextmanager
def clocked_training() -> Iterator[list[StepClock]]:
    """While active, `train()` builds a StepClock where it would build a ThroughputMonitor."""
    original = run_module.ThroughputMonitor
    StepClock.created = []
    run_module.ThroughputMonitor = StepClock  # type: ignore[misc]
    try:
        yield StepClock.created
    finally:
        run_module.ThroughputMonitor = original  # type: ignore[misc]


@dataclass
class LightningTiming:
    """One run of the real path. `step_seconds`: the steps during which no probe, checkpoint or
    validation ran (their cost is measured separately); `raw_step_seconds`: every step's wall time."""

    step_seconds: list[Stamp]
    raw_step_seconds: list[float]
    result: RunResult
    validation_seconds: float
    validation_runs: int
    n_probes: int
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def fit_seconds(self) -> float:
        return self.result.fit_seconds


def steady_step_seconds(marks: list[Mark], skip: int = 0) -> tuple[list[Stamp], list[float]]:
    """Time between consecutive marks: the quiet intervals (no probe, checkpoint or validation
    inside) by both clocks, and every interval's wall time. The first `skip` are dropped.

    Dropping whole intervals, rather than subtracting the scheduled work's wall time, keeps
    the CPU clock honest too (the callbacks only time themselves by the wall clock)."""
    steady, raw = [], []
    for prev, cur in list(zip(marks, marks[1:], strict=False))[skip:]:
        took = cur.stamp - prev.stamp
        raw.append(took.wall)
        if cur.overhead == prev.overhead and cur.validation == prev.validation:
            steady.append(took)
    return steady, raw


def run_lightning(run: RunConfig, run_dir: Path, skip: int = 0) -> LightningTiming:
    """`train(run, run_dir)` with a StepClock; start-up (data, model, Trainer) is not in the
    marks, and the first `skip` steps (warm-up) are left out."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with clocked_training() as clocks:
        result = train(run, run_dir, group="bench", name=run_dir.name)
    clock = clocks[-1]
    steady, raw = steady_step_seconds(clock.marks, skip)
    return LightningTiming(
        step_seconds=steady,
        raw_step_seconds=raw,
        result=result,
        validation_seconds=clock.validation_seconds,
        validation_runs=clock.validation_runs,
        n_probes=len(result.probe_history),
    )
