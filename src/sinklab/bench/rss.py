"""The process's current resident memory, for benchmarks that must see memory come back.

Its own module, importing nothing heavy, so a test can read it from a fresh interpreter in a
fraction of a second: RSS is process-wide, and a reading inside a long test process moves
with whatever earlier tests left behind.
"""

from __future__ import annotations

import os


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc; 0 where unavailable).

    `resource.getrusage` only gives the peak, which can never show memory being returned.
    """
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")
