"""Small timing and memory helpers shared by every benchmark section.

The benchmark machine is shared, so single timings are noisy. Everything here is built for
side-by-side comparison: robust summaries (median and spread, never a lone mean) and an
interleaving order that lets slow drift hit both contenders equally. The resident-memory
reading (the *current* RSS, not the high-water mark) is `sinklab.bench.rss.rss_bytes`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Summary:
    """Median and spread of repeated measurements.

    `spread` is (max - min) / median: how far apart the repeats landed, as a fraction of the
    typical value. It is reported next to every median so a reader can tell a real difference
    from scheduler noise.
    """

    median: float
    min: float
    max: float
    n: int

    @property
    def spread(self) -> float:
        return (self.max - self.min) / self.median if self.median else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "spread": self.spread}


def summarize(values: Sequence[float]) -> Summary:
    """Summary of a non-empty sequence of measurements."""
    if not values:
        raise ValueError("summarize() needs at least one value")
    vals = [float(v) for v in values]
    return Summary(median=statistics.median(vals), min=min(vals), max=max(vals), n=len(vals))


def timed(task: Callable[[], object], repeats: int) -> Summary:
    """Wall time of `task`, `repeats` times after one warm-up call."""
    task()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        task()
        times.append(time.perf_counter() - start)
    return summarize(times)


def abba_order(repeats: int, first: str = "a", second: str = "b") -> list[tuple[str, str]]:
    """Per-repeat order of two contenders: ab, ba, ab, ... so a linear drift cancels in pairs."""
    return [(first, second) if r % 2 == 0 else (second, first) for r in range(repeats)]


def sync(device: torch.device | str) -> None:
    """Wait for queued GPU work, so a host timestamp means 'this work is done'."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


@dataclass(frozen=True)
class Stamp:
    """Wall time and this process's CPU time at one instant.

    On a shared machine the wall clock also counts the time other people's jobs held our core;
    the process CPU clock counts only the time we ran. Rates per CPU-second are therefore the
    contention-corrected figures, reported beside the wall-clock ones (exact with one thread;
    with several, OpenMP spin-waits are counted too, on both sides of every comparison).
    """

    wall: float
    cpu: float

    @staticmethod
    def now() -> Stamp:
        return Stamp(time.perf_counter(), time.process_time())

    def __sub__(self, other: Stamp) -> Stamp:
        return Stamp(self.wall - other.wall, self.cpu - other.cpu)


def best_time(fn: Callable[[], object], repeats: int, device: torch.device | str = "cpu") -> Stamp:
    """Fastest of `repeats` calls by each clock, in seconds (the least disturbed run)."""
    best_wall = best_cpu = float("inf")
    for _ in range(repeats):
        sync(device)
        start = Stamp.now()
        fn()
        sync(device)
        took = Stamp.now() - start
        best_wall, best_cpu = min(best_wall, took.wall), min(best_cpu, took.cpu)
    return Stamp(best_wall, best_cpu)


def tokens_per_s(tokens_per_step: int, step_seconds: Sequence[float]) -> float:
    """Throughput over a span of steps: total tokens over total time (not a mean of rates)."""
    total = float(sum(step_seconds))
    return tokens_per_step * len(step_seconds) / total if total > 0 else float("nan")


def rates(tokens_per_step: int, steps: Sequence[Stamp]) -> Stamp:
    """Tokens per wall second and per CPU second over `steps` (a Stamp used as a pair of rates)."""
    return Stamp(
        tokens_per_s(tokens_per_step, [s.wall for s in steps]),
        tokens_per_s(tokens_per_step, [s.cpu for s in steps]),
    )


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares slope and intercept; used to show cost growing linearly with a count."""
    n = len(xs)
    if n < 2:
        raise ValueError("linear_fit needs two points or more")
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else 0.0
    return slope, my - slope * mx
