"""Markdown tables for the terminal and the README, and the JSON record beside them."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def fmt(value: Any, digits: int = 3) -> str:
    """Numbers to short strings; None and NaN become a dash."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}g}"
    return str(value)


def pct(value: float | None, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.{digits}f} %"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; cells that are not strings go through `fmt`."""
    cells = [[c if isinstance(c, str) else fmt(c) for c in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def write_outputs(
    out_dir: Path, stem: str, markdown: str, record: dict[str, Any]
) -> tuple[Path, Path]:
    """`<stem>.md` and `<stem>.json` under `out_dir`, plus `latest.md`/`latest.json` copies."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md_path, json_path = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    text = json.dumps(record, indent=2, default=_jsonable)
    md_path.write_text(markdown + "\n")
    json_path.write_text(text + "\n")
    (out_dir / "latest.md").write_text(markdown + "\n")
    (out_dir / "latest.json").write_text(text + "\n")
    return md_path, json_path


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)
