"""The generated questions table and README paragraph (reports/summary.py) on a docs folder with
hand-built evidence: numbers come from the evidence, a view without evidence says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinklab.reports import summary
from sinklab.reports.verdicts import Evidence, JobStats

ROPE = [0.20, 0.22, 0.18, 0.21, 0.19]


def _pos_evidence() -> Evidence:
    jobs = []
    for seed, base in enumerate(ROPE):
        for label, value, reached in (
            ("pos=rope", base, 1.0),
            ("pos=learned", base + 0.1, 1.0),
            ("pos=none", base + 0.001 * (-1) ** seed, float(seed < 3)),
        ):
            jobs.append(JobStats(label, str(seed), {"ftm_auc": value, "sink_reached": reached}))
    return Evidence("pos_sweep", "pos_sweep", 300, 614_400, jobs)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    _pos_evidence().save(folder / "evidence" / "pos_sweep.json")
    (folder / "results.md").write_text(
        "# R\n\n<!-- summary -->\nold\n<!-- /summary -->\n\n## more\n"
    )
    (tmp_path / "README.md").write_text(
        "# x\n<!-- results -->\nhand-written\n<!-- /results -->\nend\n"
    )
    return folder


def test_the_questions_table_quotes_the_evidence_and_names_missing_studies(docs: Path) -> None:
    written = summary.write_summaries(docs, docs.parent / "README.md")
    assert written == [docs / "results.md", docs.parent / "README.md"]
    text = (docs / "results.md").read_text()
    table = summary.between(text, summary.SUMMARY_MARK)
    assert table == summary.summary_markdown(docs)
    assert text.endswith("<!-- /summary -->\n\n## more\n")  # the rest is kept
    row = next(line for line in table.splitlines() if "position encoding" in line)
    assert "seeds with a lasting sink: pos=rope 5/5, pos=learned 5/5, pos=none 3/5" in row
    assert "pos=learned vs pos=rope (ftm_auc): **reproduced** (0.1 [" in row
    assert "pos=none vs pos=rope (ftm_auc): **inconclusive**" in row
    # Every row has three cells even when a cell quotes a pipe-free verdict list.
    assert all(line.count(" | ") == 2 for line in table.splitlines()[2:])
    streaming = next(line for line in table.splitlines() if "KV cache" in line)
    assert "not measured under these rules yet (`make study-attention_sweep`)" in streaming


def test_the_readme_paragraph_counts_the_verdicts_and_lists_what_reproduced(docs: Path) -> None:
    summary.write_summaries(docs, docs.parent / "README.md")
    readme = (docs.parent / "README.md").read_text()
    block = summary.between(readme, summary.README_MARK)
    assert block == summary.readme_markdown(docs)
    assert block.startswith(
        "2 verdict rows over 1 report sections (1 reproduced, 0 contradicted, 1 inconclusive, "
        "0 untestable here; 95 % t intervals over seeds, Holm-corrected within each section, "
        "which turns 0 raw verdicts inconclusive;"
    )
    assert (
        "- **Reproduced:** learned > RoPE (33.1 vs 18.2 %, Gu et al. 2025) (pos=learned vs "
        in block
    )
    assert "`streaming_sweep`" in block  # not yet measured
    assert readme.startswith("# x\n<!-- results -->\n") and readme.endswith(
        "<!-- /results -->\nend\n"
    )


def test_rendering_twice_changes_nothing(docs: Path) -> None:
    summary.write_summaries(docs, docs.parent / "README.md")
    first = (docs / "results.md").read_text(), (docs.parent / "README.md").read_text()
    summary.write_summaries(docs, docs.parent / "README.md")
    assert ((docs / "results.md").read_text(), (docs.parent / "README.md").read_text()) == first


def test_missing_markers_are_named() -> None:
    with pytest.raises(ValueError, match=r"<!-- summary --> \.\.\. <!-- /summary -->"):
        summary.replace_between("no markers", "summary", "x")
