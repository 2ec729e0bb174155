"""Every markdown table in the README and docs/ renders: each row has as many cells as its
header (an unescaped `|x|` in a title once gave a 22-cell header over a 20-cell rule)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def cells(line: str) -> int:
    """Cells of a table row: pipes that are neither escaped nor inside a code span."""
    text = re.sub(r"`[^`]*`", "code", line.strip())
    text = text.replace("\\|", "x")
    return len(text.strip("|").split("|"))


def tables(text: str) -> list[tuple[int, list[str]]]:
    """(first line number, rows) of each table: a header row followed by a |---| rule."""
    lines = text.splitlines()
    found, i, fenced = [], 0, False
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            fenced = not fenced
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if (
            not fenced
            and lines[i].lstrip().startswith("|")
            and re.match(r"^\s*\|[\s:|-]+\|\s*$", nxt)
        ):
            rows = [lines[i], nxt]
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append(lines[i])
                i += 1
            found.append((i - len(rows) + 1, rows))
            continue
        i += 1
    return found


@pytest.mark.parametrize("path", DOCUMENTS, ids=[str(p.relative_to(ROOT)) for p in DOCUMENTS])
def test_every_row_has_as_many_cells_as_its_header(path: Path) -> None:
    for start, rows in tables(path.read_text()):
        width = cells(rows[0])
        for offset, row in enumerate(rows[1:], 1):
            assert cells(row) == width, (
                f"{path.relative_to(ROOT)}:{start + offset}: {cells(row)} cells under a "
                f"{width}-cell header"
            )


def test_the_counter_sees_escaped_pipes_and_code_spans_as_text() -> None:
    assert cells("| a | max \\|x\\| | `a|b` |") == 3
    assert cells("|---|---|---|") == 3
    broken = "| a | max |x| | c |\n|---|---|---|\n| 1 | 2 | 3 |\n"
    ((_, rows),) = tables(broken)
    assert cells(rows[0]) == 5 != cells(rows[1])
