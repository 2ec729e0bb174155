"""When to checkpoint and probe: Pythia's log-spaced schedule (0, 1, 2, 4, ..., then every K).

Early training changes fastest, and sinks form early, so the first checkpoints are dense.

A run shorter than the schedule's regular interval (`max_steps < every`: a recipe cut short on
the command line, `trainer.max_steps=50` on a schedule of every 200) would be nothing but that
dense start: one probe per power of two, 8 of them in 50 steps, a third of the run's time. So
such a run keeps only its latest octaves, as many as the share of the interval it runs and at
least two (a curve with a middle): a 50-step run of a schedule of every 200 keeps 2 of its 6
powers of two (16 and 32, with steps 0 and 50). A run of at least `every` steps (every recipe
as shipped: the default run's 1200 of every 200) keeps the whole schedule.
"""

from __future__ import annotations

MIN_OCTAVES = 2  # the fewest powers of two a short run keeps (when it has that many)


def first_power(max_steps: int, log_spaced_until: int, every: int) -> int:
    """The smallest power of two on the schedule: 1, or more in a run shorter than `every`."""
    top = min(log_spaced_until, max_steps - 1)  # the last step is on the schedule anyway
    if top < 1 or max_steps >= every:
        return 1
    octaves = top.bit_length()  # the powers of two 1, 2, ..., 2**(octaves - 1) <= top
    kept = max(MIN_OCTAVES, octaves * max_steps // every)
    if kept >= octaves:
        return 1
    return 2 ** (octaves - kept)


def log_spaced_steps(max_steps: int, log_spaced_until: int, every: int) -> list[int]:
    """All scheduled optimizer steps in [0, max_steps], the final step included."""
    steps = {0, max_steps}
    power = first_power(max_steps, log_spaced_until, every)
    while power <= min(log_spaced_until, max_steps):
        steps.add(power)
        power *= 2
    steps.update(range(every, max_steps + 1, every))
    return sorted(s for s in steps if s <= max_steps)


def is_scheduled(step: int, max_steps: int, log_spaced_until: int, every: int) -> bool:
    """Whether `step` is on the schedule, without building the list."""
    if step in (0, max_steps):
        return True
    if (
        first_power(max_steps, log_spaced_until, every) <= step <= log_spaced_until
        and step & (step - 1) == 0
    ):
        return True
    return step % every == 0
