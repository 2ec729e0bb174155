"""Markdown tables for the generated docs: one renderer, so every table escapes the same way."""

from __future__ import annotations

import pandas as pd


def escape_cell(text: str) -> str:
    """A cell's text with its pipes escaped: an unescaped `|x|` splits the cell in two."""
    return text.replace("|", "\\|")


def markdown_table(table: pd.DataFrame) -> str:
    def fmt(value: object) -> str:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return "-"
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
        return escape_cell(str(value))

    head = "| " + " | ".join(escape_cell(str(c)) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, rule, *body])
