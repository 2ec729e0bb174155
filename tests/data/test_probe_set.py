"""The probe set: fixed held-out windows that follow the training BOS mode and survive a round trip."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from sinklab.data import ProbeSet, load_probe_set, save_probe_set
from sinklab.training.datamodule import SinkDataModule


def test_default_probe_is_gu_protocol(make_cfg) -> None:
    dm = SinkDataModule(make_cfg(probe={"n_windows": 7, "seq_len": 10}))
    probe = dm.probe_set()
    assert probe.input_ids.shape == (7, 10) and probe.input_ids.dtype == torch.long
    assert not probe.has_bos and probe.trigger_mask is None
    dm.setup()
    assert not torch.any(probe.input_ids == dm.bos_id)
    assert probe.text == [dm.tokenizer.decode(r.tolist()) for r in probe.input_ids]
    assert len({tuple(r.tolist()) for r in probe.input_ids}) > 1
    # the same across training seeds: every run of a study measures the same tokens
    assert torch.equal(
        SinkDataModule(make_cfg(seed=9, probe={"n_windows": 7, "seq_len": 10}))
        .probe_set()
        .input_ids,
        probe.input_ids,
    )


def test_probe_follows_training_bos(make_cfg) -> None:
    for bos in ("every_window", "document_start"):
        dm = SinkDataModule(make_cfg(bos=bos))
        probe = dm.probe_set()
        assert probe.has_bos and torch.all(probe.input_ids[:, 0] == dm.bos_id)
        assert not torch.any(probe.input_ids[:, 1:] == dm.bos_id)
    forced = SinkDataModule(make_cfg(bos="every_window", probe={"bos": "none"})).probe_set()
    assert not forced.has_bos


def test_round_trip_and_run_dir_reuse(make_cfg, tmp_path: Path) -> None:
    run = tmp_path / "run"
    dm = SinkDataModule(make_cfg(), run_dir=run)
    probe = dm.probe_set()
    assert (run / "probe" / "probe_set.npz").is_file()
    lines = (run / "probe" / "probe_text.jsonl").read_text().splitlines()
    assert [json.loads(x)["text"] for x in lines] == probe.text
    with np.load(run / "probe" / "probe_set.npz", allow_pickle=False) as data:
        assert set(data.files) == {"input_ids", "has_bos"}
    # a later run (e.g. a resume with another config) reuses the saved tokens
    again = SinkDataModule(make_cfg(probe={"n_windows": 3}), run_dir=run).probe_set()
    assert torch.equal(again.input_ids, probe.input_ids) and again.text == probe.text

    with_triggers = ProbeSet(
        input_ids=torch.arange(12).view(3, 4),
        text=["a", "b", "c"],
        trigger_mask=torch.arange(12).view(3, 4) % 3 == 0,
        has_bos=True,
    )
    save_probe_set(with_triggers, tmp_path / "other")
    loaded = load_probe_set(tmp_path / "other")
    assert torch.equal(loaded.input_ids, with_triggers.input_ids) and loaded.has_bos
    assert torch.equal(loaded.trigger_mask, with_triggers.trigger_mask) and loaded.text == [
        "a",
        "b",
        "c",
    ]
