"""sinklab-analyze re-runs the streaming evaluation with the callback's functions: the same
rows bit for bit on a run, `stream.*` overrides, and pretrained models on a corpus stream."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sinklab.analysis.records import read_rows
from sinklab.analysis.streaming import StreamConfig, stream_eval
from sinklab.errors import ConfigError
from sinklab.reanalysis import analyze, from_mapping
from sinklab.reanalysis.runner import with_options
from tests.reanalysis.helpers import train_tiny
from tests.reanalysis.test_hf_target import TEXT, _tiny_llama_folder

KEYS = ["run_id", "step", "tokens_seen", "layer", "head", "metric", "config_hash", "checkpoint"]


def _cfg(target: Path | str, **extra: object):
    return from_mapping({"target": str(target), "progress": False, **extra})


def _stream_rows(path: Path) -> pd.DataFrame:
    rows = read_rows(path)
    rows = rows[rows["metric"].str.startswith("stream/")]
    return rows.sort_values(KEYS).reset_index(drop=True)


def test_reanalysis_reproduces_the_callbacks_stream_rows_exactly(run_copy: Path) -> None:
    logged = _stream_rows(run_copy / "metrics" / "probes.parquet")
    # the default every_n_probes=1: every step of the schedule 0, 1, 2, 4
    assert sorted(logged["step"].unique()) == [0, 1, 2, 4]
    (report,) = analyze(_cfg(run_copy))
    assert report.measured == [0, 1, 2, 4]
    again = _stream_rows(report.table)
    pd.testing.assert_frame_equal(again[KEYS], logged[KEYS])
    np.testing.assert_array_equal(again["value"].to_numpy(), logged["value"].to_numpy())
    assert (again["metric"] == "stream/ratio/sinks4_shift").sum() == 4


def test_a_thinned_run_is_re_measured_where_its_callback_streamed(tmp_path: Path) -> None:
    run_dir = train_tiny(tmp_path / "run", ["callbacks.probe.stream.every_n_probes=2"])
    logged = _stream_rows(run_dir / "metrics" / "probes.parquet")
    # every 2nd probe of the schedule 0, 1, 2, 4, and always the last
    assert sorted(logged["step"].unique()) == [0, 2, 4]
    (report,) = analyze(_cfg(run_dir))
    again = _stream_rows(report.table)
    pd.testing.assert_frame_equal(again[KEYS], logged[KEYS])
    np.testing.assert_array_equal(again["value"].to_numpy(), logged["value"].to_numpy())
    # asked for explicitly, the stream is measured at every checkpoint
    (every,) = analyze(_cfg(run_dir, stream={"enabled": True}, out_dir=str(tmp_path / "e")))
    assert sorted(_stream_rows(every.table)["step"].unique()) == [0, 1, 2, 4]


def test_a_run_without_its_saved_stream_rebuilds_the_same_one(run_copy: Path) -> None:
    saved = run_copy / "probe" / "stream_ids.npy"
    ids = np.load(saved)
    saved.unlink()
    (report,) = analyze(_cfg(run_copy, steps=[4]))
    assert np.array_equal(np.load(saved), ids)
    logged = _stream_rows(run_copy / "metrics" / "probes.parquet")
    logged = logged[logged["step"] == 4].reset_index(drop=True)
    np.testing.assert_array_equal(_stream_rows(report.table)["value"], logged["value"])


def test_stream_overrides_and_the_groups_switch(run_copy: Path) -> None:
    (small,) = analyze(
        _cfg(run_copy, steps=[4], stream={"cache_len": 8}, out_dir=str(run_copy / "a"))
    )
    rows = _stream_rows(small.table)
    value = dict(zip(rows["metric"], rows["value"], strict=True))
    assert value["stream/cache_len"] == 8 and value["stream/stream_len"] == 512
    logged = _stream_rows(run_copy / "metrics" / "probes.parquet")
    before = logged[(logged["step"] == 4) & (logged["metric"] == "stream/ppl/window_shift")]
    assert float(before["value"].iloc[0]) != value["stream/ppl/window_shift"]

    (sinks,) = analyze(_cfg(run_copy, steps=[4], groups=["sinks"], out_dir=str(run_copy / "b")))
    assert not read_rows(sinks.table)["metric"].str.startswith("stream/").any()
    forced = _cfg(run_copy, steps=[4], groups=["sinks"], stream={"enabled": True})
    (both,) = analyze(with_options(forced, out_dir=str(run_copy / "c")))
    assert read_rows(both.table)["metric"].str.startswith("stream/ratio/").any()

    with pytest.raises(ConfigError, match="stream.stream_len"):
        analyze(_cfg(run_copy, steps=[4], stream={"stream_len": 100}, out_dir=str(run_copy / "d")))
    with pytest.raises(ConfigError, match="stream.sink_counts"):
        _cfg(run_copy, stream={"sink_counts": [0]})


def test_pretrained_streams_its_corpus_with_the_analyze_settings(tmp_path: Path) -> None:
    from sinklab.reanalysis.corpus_probe import load_pretrained

    folder = tmp_path / "tiny-llama"
    _tiny_llama_folder(folder)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "out"
    base = {"corpus": str(corpus), "n_windows": 4, "seq_len": 16, "out_dir": str(out)}
    stream = {"cache_len": 8, "sink_counts": [1, 4]}
    (report,) = analyze(_cfg(f"hf:{folder}", **base, stream=stream))
    rows = read_rows(report.table)
    is_stream = rows["metric"].str.startswith("stream/")
    tags = set(rows.loc[is_stream, "checkpoint"])
    assert len(tags) == 1 and "stream T=256 C=8" in next(iter(tags))
    value = dict(zip(rows.loc[is_stream, "metric"], rows.loc[is_stream, "value"], strict=True))
    assert {"stream/ratio/sinks1_shift", "stream/ratio/sinks4", "stream/ppl/dense"} <= set(value)

    # the rows are stream_eval's on the saved stream: the corpus's first 256 tokens
    ids = torch.from_numpy(np.load(out / "probe" / "stream_ids.npy"))
    model, tokenizer = load_pretrained("hf", folder)
    first = tokenizer(TEXT, add_special_tokens=False)["input_ids"][:256]
    assert ids.tolist() == first
    cfg = StreamConfig(cache_len=8, sink_counts=(1, 4)).resolve(16)
    direct = stream_eval(model, ids, cfg)
    assert dict(zip(direct["metric"], direct["value"], strict=True)) == value

    # a rerun skips; new stream settings measure only the stream again
    n_probe = int((~is_stream).sum())
    (again,) = analyze(_cfg(f"hf:{folder}", **base, stream=stream))
    assert again.skipped == [-1]
    analyze(_cfg(f"hf:{folder}", **base, stream={"cache_len": 4, "sink_counts": [1]}))
    rows = read_rows(report.table)
    assert int((~rows["metric"].str.startswith("stream/")).sum()) == n_probe
    assert len(set(rows.loc[rows["metric"].str.startswith("stream/"), "checkpoint"])) == 2
