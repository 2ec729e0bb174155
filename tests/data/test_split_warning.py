"""The data-ready line gives documents, tokens and the split; a split far from
data.val_fraction (few documents, split whole) is warned about in one line with the fix."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sinklab.data.run_data import RunData
from sinklab.data.sources import SplitCounts, split_warning

STORY = "The sea was calm that night. " * 40  # 1,160 bytes: one "document" per file


def _three_files(folder: Path) -> str:
    folder.mkdir()
    for i in range(3):
        paragraphs = [f"Chapter {i}, part {p}. {STORY}" for p in range(10)]
        (folder / f"book{i}.txt").write_text("\n\n".join(paragraphs))
    return str(folder / "*.txt")


def _ready(make_cfg, caplog: pytest.LogCaptureFixture, **over) -> tuple[RunData, list[str]]:
    data = RunData(make_cfg(**over))
    with caplog.at_level(logging.INFO, logger="sinklab.data.run_data"):
        data.build()
    return data, [r.getMessage() for r in caplog.records if r.name == "sinklab.data.run_data"]


def test_three_files_put_a_third_in_validation_and_say_how_to_fix_it(
    make_cfg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    glob = _three_files(tmp_path / "books")
    data, lines = _ready(make_cfg, caplog, source="text_files", text_files={"paths": [glob]})
    split = data.split
    assert split is not None
    assert (split.train_documents, split.val_documents) == (2, 1)
    # byte tokenizer: each file's bytes plus its EOS, so the counts are known exactly
    sizes = sorted(len(p.read_bytes()) + 1 for p in (tmp_path / "books").iterdir())
    assert split.tokens == sum(sizes) and split.val_tokens in sizes
    share = 100 * split.val_tokens / split.tokens
    ready, warning = lines
    assert ready.startswith("data ready in ") and ready.endswith(
        f"(vocab {data.vocab_size}): 3 documents, {split.tokens:,} tokens: "
        f"train 2 documents ({split.train_tokens:,} tokens), validation 1 document "
        f"({split.val_tokens:,} tokens, {share:.1f} %; data.val_fraction 0.1)"
    )
    assert warning == (
        f"data.val_fraction: the validation split holds 1 of 3 documents "
        f"({split.val_tokens:,} of {split.tokens:,} tokens, {share:.1f} %), far from the 10 % "
        "asked for: the split takes whole documents; split the files into smaller documents "
        "with data.text_files.sample_by=paragraph (or line), or add files"
    )


def test_paragraphs_even_the_split_out_and_silence_the_warning(
    make_cfg, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    glob = _three_files(tmp_path / "books")
    data, lines = _ready(
        make_cfg,
        caplog,
        source="text_files",
        text_files={"paths": [glob], "sample_by": "paragraph"},
    )
    assert data.split is not None and data.split.documents == 30
    assert data.split.val_documents == 3
    assert len(lines) == 1 and "30 documents" in lines[0]  # no warning


@pytest.mark.parametrize(
    "val_tokens,warned",
    [(49, True), (50, False), (100, False), (200, False), (201, True)],
)
def test_the_warning_band_is_half_to_twice_the_fraction(
    make_cfg, val_tokens: int, warned: bool
) -> None:
    counts = SplitCounts(9, 1, 1000 - val_tokens, val_tokens)  # val_fraction 0.1: 50..200
    assert (split_warning(counts, make_cfg(val_fraction=0.1)) is not None) is warned


def test_the_fix_names_the_source(make_cfg) -> None:
    counts = SplitCounts(2, 1, 60, 40)
    assert split_warning(counts, make_cfg()).endswith(  # type: ignore[union-attr]
        "add documents, or set data.val_fraction to the share you want"
    )
