"""Turn plain config mappings (Hydra sections) into validated dataclasses.

Every section of the Hydra config maps onto one dataclass; unknown keys and wrong types fail
here, with the key named, before anything is built or written.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from sinklab.errors import ConfigError

T = TypeVar("T")

# The Hydra config tree (conf/ at the repository root), for the entry points and the bench.
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def from_mapping(cls: type[T], values: Mapping[str, Any] | None, section: str) -> T:
    """Build dataclass `cls` from `values`; unknown keys raise a ConfigError naming `section.key`."""
    values = dict(values or {})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in values:
        if key not in known:
            raise ConfigError(
                f"{section}.{key}", f"unknown key; known keys: {', '.join(sorted(known))}"
            )
    try:
        return cls(**values)
    except TypeError as err:  # a missing required field, for example
        raise ConfigError(section, str(err)) from None
