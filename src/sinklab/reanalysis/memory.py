"""Hand a measured model's memory back before the next one loads."""

from __future__ import annotations

import gc


def release_memory() -> None:
    """Free the last model before the next loads: collect cycles, then hand glibc's free heap
    pages back to the system, so RSS stays flat over a trajectory or a run's checkpoints
    instead of creeping with fragmentation (no-op where libc has no malloc_trim)."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass
