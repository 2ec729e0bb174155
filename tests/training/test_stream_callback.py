"""The probe callback runs the streaming evaluation on the probe schedule (or every n-th
probe), tags its rows like every other row, logs only the model-level curves, and a bad
`callbacks.probe.stream` key is refused before training with a one-line error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sinklab.analysis.records import read_rows
from sinklab.analysis.streaming import stream_eval
from sinklab.errors import ConfigError
from sinklab.runs.checkpoints import load_checkpoint_model
from sinklab.training.run import train, validate_config
from tests.training.conftest import compose_train, tiny_overrides


def test_stream_rows_every_second_probe_tagged_and_logged(tmp_path: Path) -> None:
    over = tiny_overrides(tmp_path) + ["callbacks.probe.stream.every_n_probes=2"]
    run = validate_config(compose_train(over))
    run_dir = tmp_path / "run"
    train(run, run_dir)
    rows = read_rows(run_dir / "metrics" / "probes.parquet")
    stream = rows[rows["metric"].str.startswith("stream/")]
    # probe schedule 0, 1, 2, 4: the 0th and 2nd probe, and always the last
    assert sorted(stream["step"].unique()) == [0, 2, 4]
    assert sorted(rows["step"].unique()) == [0, 1, 2, 4]
    for step, part in stream.groupby("step"):
        other = rows[(rows["step"] == step) & ~rows["metric"].str.startswith("stream/")]
        for col in ("run_id", "tokens_seen", "config_hash", "checkpoint"):
            assert set(part[col]) == set(other[col])
    names = set(stream["metric"])
    assert {
        "stream/ratio/window_shift",
        "stream/ratio/sinks4_shift",
        "stream/ppl/recompute",
    } <= names

    # the saved stream: 16 windows of 32 tokens, BOS first (training uses BOS)
    ids = np.load(run_dir / "probe" / "stream_ids.npy")
    assert ids.shape == (512,) and ids[0] == ids.max()  # BOS is the last id of the zipf task

    # the rows are stream_eval's on the checkpoint's weights, the saved stream, the run's config
    model, _ = load_checkpoint_model(run_dir / "checkpoints" / "step0000004-tokens512.ckpt")
    cfg = run.probe.stream.resolved(run.data.seq_len)
    again = stream_eval(model, torch.from_numpy(ids), cfg)
    last = stream[stream["step"] == 4].reset_index(drop=True)
    pd.testing.assert_series_equal(last["metric"], again["metric"], check_names=False)
    np.testing.assert_array_equal(last["value"].to_numpy(), again["value"].to_numpy())

    # the logger gets the curves, not the per-bucket rows
    csv = pd.read_csv(next((run_dir / "csv").rglob("metrics.csv")))
    assert "stream/ratio/window_shift" in csv.columns and "stream/ppl/recompute" in csv.columns
    assert not any(c.startswith(("stream/nll/", "stream/cache_len")) for c in csv.columns)
    logged = csv.dropna(subset=["stream/ratio/window_shift"])["step"].tolist()
    assert sorted(int(s) for s in logged) == [0, 2, 4]


@pytest.mark.parametrize(
    "override,key",
    [
        ("callbacks.probe.stream.cache_len=0", "callbacks.probe.stream.cache_len"),
        ("callbacks.probe.stream.every_n_probes=0", "callbacks.probe.stream.every_n_probes"),
        ("callbacks.probe.stream.conditions=[sinks0]", "callbacks.probe.stream.conditions"),
        ("callbacks.probe.stream.shift_modes=[sideways]", "callbacks.probe.stream.shift_modes"),
        ("+callbacks.probe.stream.cache=4", "callbacks.probe.stream.cache"),
        # needs the window (T = 16 x 32): checked before training too
        ("callbacks.probe.stream.stream_len=16", "callbacks.probe.stream.cache_len"),
        ("callbacks.probe.stream.sink_counts=[20]", "callbacks.probe.stream.sink_counts"),
    ],
)
def test_bad_stream_config_is_one_line_naming_the_key(
    tmp_path: Path, override: str, key: str
) -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(compose_train(tiny_overrides(tmp_path) + [override]))
    assert err.value.key == key and "\n" not in str(err.value)


def test_learned_positions_need_the_cache_inside_the_table(tmp_path: Path) -> None:
    over = tiny_overrides(tmp_path) + ["model.pos=learned", "callbacks.probe.stream.cache_len=65"]
    with pytest.raises(ConfigError, match="callbacks.probe.stream.cache_len: 65 is past"):
        validate_config(compose_train(over))
    off = over + ["callbacks.probe.stream.enabled=false"]
    assert not validate_config(compose_train(off)).probe.stream.enabled
