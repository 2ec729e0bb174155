"""The probe callback runs the W8A8 evaluation at its own steps (first, last, power-of-two probe
steps from `from_step`), on windows fixed for the run and saved beside the probe set, tags its
rows like every other row, logs `quant/ppl_increase/*`, and a bad key is refused up front."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from sinklab.analysis.quant import QuantConfig, w8a8_eval
from sinklab.analysis.quant_eval import ProbeQuantConfig
from sinklab.analysis.records import read_rows
from sinklab.data.run_data import CALIB_INDEX, RunData, load_quant_ids
from sinklab.errors import ConfigError
from sinklab.runs.checkpoints import load_checkpoint_model
from sinklab.training.run import train, validate_config
from tests.training.conftest import compose_train, tiny_overrides

QUANT = [
    "callbacks.probe.quant.enabled=true",
    "callbacks.probe.quant.from_step=2",
    "callbacks.probe.quant.eval_windows=6",
    "callbacks.probe.quant.quantizer.calibration_batches=2",
    "callbacks.probe.quant.quantizer.batch_size=4",
    "callbacks.probe.stream.enabled=false",
]


def test_schedule_first_last_and_powers_of_two_from_step() -> None:
    cfg = ProbeQuantConfig(enabled=True, from_step=256)
    # the default run's probe steps: 0, 1, 2, 4, ..., 256, then every 200 to 1200
    due = [s for s in range(1201) if cfg.due(s, 1200, 256, 200)]
    assert due == [0, 256, 1200]
    due_long = [s for s in range(5001) if cfg.due(s, 5000, 2048, 1000)]
    assert due_long == [0, 256, 512, 1024, 2048, 5000]  # 4096 is not a probe step


def test_quant_rows_at_scheduled_steps_tagged_logged_and_reproducible(tmp_path: Path) -> None:
    run = validate_config(compose_train(tiny_overrides(tmp_path) + QUANT))
    run_dir = tmp_path / "run"
    train(run, run_dir)
    rows = read_rows(run_dir / "metrics" / "probes.parquet")
    quant = rows[rows["metric"].str.startswith("quant/")]
    assert sorted(rows["step"].unique()) == [0, 1, 2, 4]
    assert sorted(quant["step"].unique()) == [0, 2, 4]
    for step, part in quant.groupby("step"):
        other = rows[(rows["step"] == step) & ~rows["metric"].str.startswith("quant/")]
        for col in ("run_id", "tokens_seen", "config_hash", "checkpoint"):
            assert set(part[col]) == set(other[col])

    # the saved inputs: the first 6 validation windows and training batches no run reaches
    data = RunData(run.data)
    saved = load_quant_ids(run_dir)
    val = torch.cat([b["input_ids"] for b in data.batches.val_batches()])
    torch.testing.assert_close(saved.eval_ids, val[:6], rtol=0, atol=0)
    for k in range(2):
        torch.testing.assert_close(
            saved.calib[k], data.batch_at(CALIB_INDEX + k)["input_ids"], rtol=0, atol=0
        )
    assert saved.bos_id == data.bos_id

    # the rows are w8a8_eval's on the checkpoint's weights and the saved inputs
    model, _ = load_checkpoint_model(run_dir / "checkpoints" / "step0000004-tokens512.ckpt")
    qcfg = QuantConfig(calibration_batches=2, batch_size=4)
    again = w8a8_eval(model, saved.eval_ids, list(saved.calib), qcfg)
    last = quant[quant["step"] == 4].reset_index(drop=True)
    pd.testing.assert_series_equal(last["metric"], again["metric"], check_names=False)
    np.testing.assert_array_equal(last["value"].to_numpy(), again["value"].to_numpy())

    # the logger gets the ppl increase curves at the same steps
    csv = pd.read_csv(next((run_dir / "csv").rglob("metrics.csv")))
    for mode in qcfg.modes:
        col = f"quant/ppl_increase/{mode}"
        logged = csv.dropna(subset=[col])["step"].tolist()
        assert sorted(int(s) for s in logged) == [0, 2, 4]
    assert "quant/ppl/fp" not in csv.columns


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("callbacks.probe.quant.quantizer.bits=1", "callbacks.probe.quant.quantizer.bits"),
        (
            "callbacks.probe.quant.quantizer.modes=[per_row]",
            "callbacks.probe.quant.quantizer.modes",
        ),
        (
            "callbacks.probe.quant.prefix.prefixes=[sinkhorn]",
            "callbacks.probe.quant.prefix.prefixes",
        ),
        ("+callbacks.probe.quant.prefix.bos_id=1", "callbacks.probe.quant.prefix.bos_id"),
        ("callbacks.probe.quant.eval_windows=0", "callbacks.probe.quant.eval_windows"),
        ("+callbacks.probe.quant.colour=red", "callbacks.probe.quant.colour"),
    ],
)
def test_bad_quant_key_is_one_line_error(tmp_path: Path, override: str, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        validate_config(compose_train(tiny_overrides(tmp_path) + [override]))
    assert err.value.key == key
    assert "\n" not in str(err.value)
