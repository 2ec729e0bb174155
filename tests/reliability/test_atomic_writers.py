"""Every file a user keeps reaches its final name through one atomic rename: checkpoints,
last.ckpt, the probe table, the CSV log, model.safetensors, the reanalysis tables and the
data caches. A writer that opened the final path directly would leave a torn file after a
crash; here it shows up as a kept file that no rename produced."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sinklab.reanalysis import analyze, from_mapping
from tests.reanalysis.helpers import train_tiny

TEXT = "\n\n".join(
    f"Document {i}: the quick brown fox jumps over the lazy dog, again and again." * 6
    for i in range(40)
)


def test_every_kept_file_is_renamed_into_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    renamed: set[Path] = set()
    real_replace = os.replace

    def recording_replace(src: os.PathLike | str, dst: os.PathLike | str) -> None:
        real_replace(src, dst)
        renamed.add(Path(dst).resolve())

    monkeypatch.setattr(os, "replace", recording_replace)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    cache = tmp_path / "cache"
    run = train_tiny(
        tmp_path / "run",
        extra=[
            "data=text_files",
            f"data.text_files.paths=[{corpus}]",
            "data.text_files.sample_by=paragraph",
            "data.tokenizer.kind=bpe",
            "data.tokenizer.vocab_size=300",
            "data.val_fraction=0.2",
            f"paths.cache_dir={cache}",
        ],
    )
    analyze(from_mapping({"target": str(run), "progress": False}))

    # sinklab's own caches (the datasets library keeps its own under hf_datasets/)
    ours = [
        p
        for folder in ("tokens", "tokenizers")
        for p in (cache / folder).rglob("*")
        if p.is_file() and not p.name.startswith(".")
    ]
    kept = [
        *(run / "checkpoints").glob("*.ckpt"),
        run / "metrics" / "probes.parquet",
        run / "metrics" / "reanalysis.parquet",
        run / "metrics" / "reanalysis.csv",
        run / "csv" / "metrics.csv",
        run / "model.safetensors",
        *ours,
    ]
    assert len(ours) >= 3  # the tokenizer and the train/val token arrays
    assert len([p for p in kept if p.suffix == ".ckpt"]) >= 4
    for path in kept:
        assert path.is_file(), f"{path} was not written"
        assert path.resolve() in renamed, f"{path} was written in place, not renamed into place"
