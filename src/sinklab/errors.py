"""One error type for bad configuration, so every entry point can print one line and exit non-zero."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


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
