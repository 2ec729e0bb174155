"""Every generated number in docs/results.md and the README is what the committed evidence
gives: the robust-summary and verdict blocks of each section, the questions table and the
README's results paragraph are re-rendered from docs/evidence/*.json and must match verbatim.
Editing any of them by hand fails here; `python scripts/study_report.py --summary` (or a
study's report) rewrites them."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinklab.reports import study_catalog, summary
from sinklab.reports.studies import evidence_lines
from sinklab.reports.verdicts import Evidence

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
EVIDENCE = sorted((DOCS / "evidence").glob("*.json"))


@pytest.mark.parametrize("path", EVIDENCE, ids=[p.stem for p in EVIDENCE])
def test_each_sections_evidence_block_is_rendered_from_its_file(path: Path) -> None:
    ev = Evidence.load(path)
    view = study_catalog.view(ev.view)
    results = (DOCS / "results.md").read_text()
    start, end = f"<!-- study:{ev.view} -->", f"<!-- /study:{ev.view} -->"
    section = results.split(start, 1)[1].split(end, 1)[0]
    block = "\n".join(evidence_lines(ev, view)).strip()
    assert block in section, f"{ev.view}: its generated evidence block was edited by hand"


def test_the_questions_table_is_the_rendering_of_the_evidence() -> None:
    text = (DOCS / "results.md").read_text()
    assert summary.between(text, summary.SUMMARY_MARK) == summary.summary_markdown(DOCS)


def test_the_readme_results_paragraph_is_the_rendering_of_the_evidence() -> None:
    text = (ROOT / "README.md").read_text()
    assert summary.between(text, summary.README_MARK) == summary.readme_markdown(DOCS)


def test_every_evidence_file_belongs_to_a_declared_view() -> None:
    declared = set(study_catalog.views())
    assert {p.stem for p in EVIDENCE} <= declared
