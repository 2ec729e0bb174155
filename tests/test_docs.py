"""The docs stay true to the code: the generated configuration reference equals what the code
generates, the README stays short, every relative link resolves, and nothing cites a file
outside the repository."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from sinklab import docs_gen

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 200
# A markdown link or image: [text](target) or ![alt](target); the target up to a space or ")".
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
OUTSIDE = re.compile(r"(?<![\w./-])shared/(research|design\.md|conventions\.md|seeds)")


@pytest.fixture(scope="module")
def generated() -> str:
    """The generated reference, built once: composing the config tree takes seconds."""
    return docs_gen.config_markdown()


def test_configuration_reference_is_generated(generated: str) -> None:
    """docs/configuration.md holds `config_markdown()` verbatim between its markers, so a key
    added to conf/ or a config class cannot be missing from the reference."""
    page = (ROOT / "docs" / docs_gen.CONFIG_DOC).read_text()
    assert docs_gen.block(page, "config") == generated, (
        "docs/configuration.md is out of date: run `make docs` (python -m sinklab.docs_gen)"
    )


def test_every_config_key_is_in_the_reference(generated: str) -> None:
    """An independent check of the generator: every leaf key of the composed default config
    (walked here without the generator) has a row, or its keys do (a null section such as
    `callbacks.probe.metrics` is listed by its config class's fields)."""
    from sinklab.docs_gen import _compose

    def leaves(tree: dict, prefix: str = "") -> list[str]:
        out = []
        for key, value in tree.items():
            path = f"{prefix}{key}"
            out += leaves(value, path + ".") if isinstance(value, dict) and value else [path]
        return out

    keys = leaves(_compose("train", []))
    missing = [k for k in keys if f"| `{k}` |" not in generated and f"| `{k}." not in generated]
    assert not missing, f"keys without a row: {missing}"


def test_replace_block_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`write_docs` rewrites only the generated blocks and keeps the hand-written text."""
    monkeypatch.setitem(docs_gen.GENERATED, docs_gen.CONFIG_DOC, ("config", lambda: "| keys |"))
    start, end = docs_gen.markers("metrics")
    page = tmp_path / docs_gen.METRICS_DOC
    page.write_text(f"# Metrics\n\nours\n\n{start}\nstale\n{end}\n\nmore of ours\n")
    (tmp_path / docs_gen.CONFIG_DOC).write_text(
        "pre\n" + "\n".join(docs_gen.markers("config")) + "\npost\n"
    )
    docs_gen.write_docs(tmp_path)
    text = page.read_text()
    assert text.startswith("# Metrics\n\nours\n\n") and text.endswith("\n\nmore of ours\n")
    assert docs_gen.block(text, "metrics") == docs_gen.metrics_table()
    assert "stale" not in text
    assert docs_gen.block((tmp_path / docs_gen.CONFIG_DOC).read_text(), "config") == "| keys |"
    assert docs_gen.write_docs(tmp_path) == []  # a second run changes nothing


def test_yaml_comments_and_headers(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(
        "# @package _global_\n# Header. Second sentence.\nkey: 1   # trailing\n"
        "# above the section\nsection:\n  inner: 'a # b'  # the inner one\n  bare: 2\n"
    )
    assert docs_gen.yaml_comments(path) == {
        "key": "trailing",
        "section": "above the section",
        "section.inner": "the inner one",
    }
    assert docs_gen.header_comment(path) == "Header. Second sentence."
    assert docs_gen.first_sentence("Gu et al. (2025) found it. Then more.") == (
        "Gu et al. (2025) found it."
    )


@dataclass
class _Base:
    kept: int = 1  # from the base class


@dataclass
class _Fields(_Base):
    """`documented` says what it does here; `short` x."""

    plain: int = 0  # what plain means  # type: ignore[assignment]
    # the line above says it
    above: str = "a"
    tool_only: int = 2  # noqa: E501
    documented: bool = True
    short: float = 1.0


def test_field_comments_read_the_source() -> None:
    """Comments on a field's line or right above it, inherited ones included; tools' pragmas
    are not meanings; the docstring fallback takes a phrase of three words or more."""
    assert docs_gen.field_comments(_Fields) == {
        "kept": "from the base class",
        "plain": "what plain means",
        "above": "the line above says it",
    }
    assert docs_gen.docstring_meanings(_Fields) == {"documented": "says what it does here"}


def test_types_in_words() -> None:
    describe = docs_gen.describe_type
    assert describe(Literal["rope", "alibi"]) == "rope \\| alibi"  # escaped for a table cell
    assert describe(int | None) == "int or null"
    assert describe(tuple[float, float]) == "list of 2 float"
    assert describe(tuple[int, ...]) == "list of int"
    assert describe(Literal["all", "last"] | tuple[int, ...]) == "all \\| last or list of int"
    assert describe(dict[str, Any]) == "mapping"


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < README_MAX_LINES, f"README.md has {len(lines)} lines"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    """Every relative link or image in README.md and docs/*.md names a file that exists."""
    broken = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue  # a URL or an anchor on the same page
        if not (page.parent / target.split("#", 1)[0]).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links to missing files: {broken}"


def test_nothing_cites_files_outside_the_repository() -> None:
    """Docstrings, config comments and docs cite docs/ pages, not notes a reader cannot open."""
    files = [
        *(ROOT / "src" / "sinklab").rglob("*.py"),
        *(ROOT / "conf").rglob("*.yaml"),
        *PAGES,
    ]
    hits = [
        f"{f.relative_to(ROOT)}:{n}"
        for f in files
        for n, line in enumerate(f.read_text().splitlines(), 1)
        if OUTSIDE.search(line)
    ]
    assert not hits, f"cite a docs/ page instead: {hits}"
