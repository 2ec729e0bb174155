"""The streaming evaluation's held-out stream: which tokens, BOS like training, saved once."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from sinklab.data import sampling
from sinklab.data.config import DataConfig
from sinklab.data.run_data import RunData, load_stream_ids
from sinklab.data.sources import load_documents, split_documents
from sinklab.errors import ConfigError


def _val_tokens(data: RunData) -> list[int]:
    """The first validation document's tokens, encoded afresh (not read from the cache)."""
    cfg = data.cfg
    _, val = split_documents(load_documents(cfg), cfg.val_fraction, cfg.split_seed)
    return data.tokenizer.encode(val[0])


@pytest.mark.parametrize("bos", ["none", "every_window", "document_start"])
def test_text_stream_is_the_validation_documents_with_training_bos(make_cfg, bos: str) -> None:
    data = RunData(make_cfg(bos=bos))
    data.build()
    ids = data.stream_ids(64)
    assert ids.dtype == torch.int64 and ids.shape == (64,)
    val = _val_tokens(data)
    assert len(val) > 64  # one letter document covers the whole stream
    if bos == "none":
        assert ids.tolist() == val[:64]
    else:
        assert int(ids[0]) == data.bos_id and ids[1:].tolist() == val[:63]


def test_text_stream_longer_than_the_split_is_the_whole_split(make_cfg) -> None:
    data = RunData(make_cfg())
    data.build()
    ids = data.stream_ids(100_000)
    n_val = len(np.load(data.batches.files["val_plain"], mmap_mode="r"))
    assert len(ids) == n_val < 100_000 and ids[:64].tolist() == _val_tokens(data)[:64]


def _bb_cfg(**over) -> DataConfig:
    return DataConfig.from_dict(
        {"source": "synthetic", "bos": "every_window", "seq_len": 32, "synthetic": {"kind": "zipf"}}
        | over
    )


def test_synthetic_stream_is_held_out_deterministic_and_bos_first(tmp_path: Path) -> None:
    data = RunData(_bb_cfg())
    ids = data.stream_ids(256)
    assert ids.shape == (256,) and int(ids[0]) == data.bos_id
    assert not bool((ids[1:] == data.bos_id).any())
    # the same for every training seed (split_seed only), different from training and probe
    assert torch.equal(RunData(_bb_cfg(seed=7)).stream_ids(256), ids)
    train = data.batch_at(0)["input_ids"][0]
    assert not torch.equal(train[1:16], ids[1:16])
    assert not torch.equal(data.probe_set().input_ids[0][1:16], ids[1:16])
    task = data.batches.task
    again = task.sample(sampling.rng(0, 1001), 1, 256, bos=True)[0]
    assert ids.tolist() == again.tolist()  # the documented seed stream
    no_bos = RunData(_bb_cfg(bos="none")).stream_ids(64)
    assert not bool((no_bos == data.bos_id).any())


def test_stream_is_saved_once_and_reused(tmp_path: Path) -> None:
    run = tmp_path / "run"
    ids = RunData(_bb_cfg(), run_dir=run).stream_ids(128)
    path = run / "probe" / "stream_ids.npy"
    assert path.is_file() and np.load(path).tolist() == ids.tolist()
    # a resumed run reads the saved file, whatever the generator would give now
    np.save(path, np.arange(128, dtype=np.int64))
    again = RunData(_bb_cfg(split_seed=3), run_dir=run).stream_ids(128)
    assert again.tolist() == list(range(128))
    assert load_stream_ids(run).tolist() == list(range(128))
    with pytest.raises(ConfigError, match="callbacks.probe.stream.stream_len"):
        RunData(_bb_cfg(), run_dir=run).stream_ids(64)
