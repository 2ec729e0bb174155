"""When to checkpoint and probe: Pythia's log-spaced schedule (0, 1, 2, 4, ..., then every K).

Early training changes fastest, and sinks form early, so the first checkpoints are dense.
"""

from __future__ import annotations


def log_spaced_steps(max_steps: int, log_spaced_until: int, every: int) -> list[int]:
    """All scheduled optimizer steps in [0, max_steps], the final step included."""
    steps = {0, max_steps}
    power = 1
    while power <= min(log_spaced_until, max_steps):
        steps.add(power)
        power *= 2
    steps.update(range(every, max_steps + 1, every))
    return sorted(s for s in steps if s <= max_steps)


def is_scheduled(step: int, max_steps: int, log_spaced_until: int, every: int) -> bool:
    """Whether `step` is on the schedule, without building the list."""
    if step in (0, max_steps):
        return True
    if step <= log_spaced_until and step & (step - 1) == 0:
        return True
    return step % every == 0
