"""One error type for bad configuration, so every entry point can print one line and exit
non-zero, and the exit codes those entry points share (README: "Exit codes")."""

from __future__ import annotations

import difflib
import errno
from collections.abc import Iterable
from typing import Any

# Exit codes of sinklab-train and sinklab-analyze, one per kind of failure a script can act on.
EXIT_CONFIG = 2  # a bad config, override or input: nothing was trained
EXIT_NONFINITE = 3  # a non-finite loss or gradient stopped the run
EXIT_OUTPUT = 4  # the output folder cannot be written
EXIT_SKIPPED = 5  # the run finished, but skipped more than trainer.max_skipped_share of its batches
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT), as a shell reports it


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the key and what is allowed."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"{key}: {message}")


def check_choice(key: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise a ConfigError naming `key` unless `value` is one of `allowed`."""
    allowed = tuple(allowed)
    if value not in allowed:
        options = ", ".join(str(a) for a in allowed)
        raise ConfigError(key, f"{value!r} is not allowed; choose one of: {options}")


def check(condition: bool, key: str, message: str) -> None:
    """Raise a ConfigError for `key` when `condition` is false."""
    if not condition:
        raise ConfigError(key, message)


def nearest(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The candidates closest to a mistyped `name`, best first: those within 0.05 of the best
    difflib ratio (at least 0.6), so a clear winner comes alone.

    A dotted name is compared with its own section's keys by their last part alone, so
    `model.poss` finds `model.pos` and `model.weight` finds nothing in a long section."""
    scores: dict[str, float] = {}
    section, _, leaf = name.rpartition(".")
    for cand in set(candidates):
        if section and cand.rpartition(".")[0] == section:  # the shared prefix proves nothing
            score = difflib.SequenceMatcher(None, leaf, cand.rpartition(".")[2]).ratio()
        else:
            score = difflib.SequenceMatcher(None, name, cand).ratio()
        if score >= 0.6:
            scores[cand] = score
    if not scores:
        return []
    best = max(scores.values())
    ranked = sorted(scores, key=lambda c: (-scores[c], c))
    return [c for c in ranked if scores[c] >= best - 0.05][:n]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' did you mean a, b?' for the nearest candidates, or '' when none is close."""
    found = nearest(name, candidates)
    return f" did you mean {' or '.join(found)}?" if found else ""


_WRITE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EEXIST,
}


def describe_os_error(err: OSError) -> str:
    """One line: what failed, on which path, and what to do when the output is full or read-only."""
    name = errno.errorcode.get(err.errno or 0, "")
    where = f" ({err.filename})" if err.filename else ""
    what = err.strerror or str(err)
    hint = ""
    if err.errno in _WRITE_ERRNOS:
        hint = "; the output folder is full or not writable: free space or point paths.output_dir elsewhere"
    return f"cannot write output{where}: {what} [{name}]{hint}" if name else f"{what}{where}{hint}"
