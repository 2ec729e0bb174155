"""What W&B receives: per-layer values as tables and one chart per metric, integer codes in a
table, only the key scalars plotted by themselves, our config alone, no anonymous warning.

The unit tests give the logger a fake W&B run (no process, no network); the end-to-end test
trains the tiny config with W&B offline and reads its transaction log back."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from sinklab.training.loggers import (
    KEY_SCALARS,
    SinklabWandbLogger,
    is_key_scalar,
    short_description,
    split_for_wandb,
)
from tests.training.conftest import tiny_overrides
from tests.training.test_ddp_cpu import wandb_records


class FakeRun:
    """What the logger calls on a W&B run, recorded."""

    def __init__(self) -> None:
        self.logged: list[dict[str, Any]] = []
        self.defined: list[tuple[str, dict[str, Any]]] = []
        self.config: dict[str, Any] = {}

    def log(self, data: dict[str, Any]) -> None:
        self.logged.append(data)

    def define_metric(self, name: str, **kwargs: Any) -> None:
        self.defined.append((name, kwargs))


def _logger(tmp_path: Path) -> tuple[SinklabWandbLogger, FakeRun]:
    logger = SinklabWandbLogger(save_dir=str(tmp_path), mode="disabled", config={"seed": 0})
    run = FakeRun()
    logger._experiment = run
    return logger, run


def test_split_sorts_curves_layer_rows_and_codes() -> None:
    split = split_for_wandb(
        {
            "sink/sink1_pct": 40.0,
            "sink/sink1_pct/layer_1": 80.0,
            "sink/sink1_pct/layer_0": 0.0,
            "massive/top1_channel/layer_0": 17.0,
            "spike/channel/rank_2/layer_1": 3.0,
            "frames/class": 1.0,
            "frames/ref_mass/rank_0/layer_0": 0.5,
            "train/loss": 4.5,
        }
    )
    assert split.scalars == {"sink/sink1_pct": 40.0, "train/loss": 4.5}
    assert split.layer_rows == [
        ("sink/sink1_pct", 1, 80.0),
        ("sink/sink1_pct", 0, 0.0),
        ("frames/ref_mass/rank_0", 0, 0.5),
    ]
    assert split.code_rows == [
        ("massive/top1_channel", 0, 17.0),
        ("spike/channel/rank_2", 1, 3.0),
        ("frames/class", -1, 1.0),
    ]


def test_per_layer_rows_become_a_table_and_one_chart_per_key_metric(tmp_path: Path) -> None:
    logger, run = _logger(tmp_path)
    logger.log_metrics({"sink/sink1_pct/layer_0": 0.0, "sink/sink1_pct/layer_1": 10.0}, step=4)
    logger.log_metrics(
        {
            "sink/sink1_pct/layer_0": 5.0,
            "sink/sink1_pct/layer_1": 50.0,
            "qk/cos_q_k0/layer_1": 0.25,
            "massive/top1_channel/layer_1": 7.0,
        },
        step=8,
    )
    first, second = run.logged
    assert not [k for data in run.logged for k in data if "/layer_" in k]
    assert first["trainer/global_step"] == 4 and second["trainer/global_step"] == 8
    assert second["layers/table"].data == [
        [8, "sink/sink1_pct", 0, 5.0],
        [8, "sink/sink1_pct", 1, 50.0],
        [8, "qk/cos_q_k0", 1, 0.25],
    ]
    chart = second["layers/sink/sink1_pct"]  # every probe so far, a line per layer
    assert chart.table.data == [
        [4, "layer 0", 0.0],
        [8, "layer 0", 5.0],
        [4, "layer 1", 10.0],
        [8, "layer 1", 50.0],
    ]
    assert chart.spec.string_fields["title"].startswith(
        "sink/sink1_pct by layer: Gu et al.'s Sink_1"
    )
    assert "layers/qk/cos_q_k0" not in second  # not a key chart: in the table only
    assert second["codes/table"].data == [[8, "massive/top1_channel", 1, 7.0]]
    logger.finalize("success")
    assert run.logged[-1]["layers/history"].data[:2] == [
        [4, "sink/sink1_pct", 0, 0.0],
        [4, "sink/sink1_pct", 1, 10.0],
    ]
    assert len(run.logged[-1]["layers/history"].data) == 5


def test_only_key_scalars_are_plotted_by_themselves(tmp_path: Path) -> None:
    logger, run = _logger(tmp_path)
    logger.log_metrics({"sink/sink1_pct": 1.0, "qk/cos_q_k0": 0.1, "slot_mass/sink0": 0.3}, step=1)
    logger.log_metrics({"qk/cos_q_k0": 0.2, "qk/k0_norm": 2.0}, step=2)
    assert run.defined == [
        ("qk/cos_q_k0", {"step_metric": "trainer/global_step", "step_sync": True, "hidden": True}),
        ("qk/k0_norm", {"step_metric": "trainer/global_step", "step_sync": True, "hidden": True}),
    ]
    assert run.logged[1] == {"qk/cos_q_k0": 0.2, "qk/k0_norm": 2.0, "trainer/global_step": 2}
    assert is_key_scalar("slot_mass/kv_bias") and not is_key_scalar("slot_mass")


def test_the_config_is_ours_and_no_anonymous_argument(tmp_path: Path) -> None:
    logger, run = _logger(tmp_path)
    logger.log_hyperparams({"model": "SinkLabModule", "lr": 0.1})
    assert run.config == {}
    assert "anonymous" not in logger._wandb_init
    assert logger._wandb_init["config"] == {"seed": 0}


def test_short_description_is_the_first_clause() -> None:
    assert short_description("Mean over queries t >= 1 of A[t,0], averaged over windows (x).") == (
        "Mean over queries t >= 1 of A[t,0], averaged over windows"
    )
    assert short_description("a" * 100, limit=10) == "aaaaaaa..."


@pytest.mark.parametrize("required", ["sink/sink1_pct", "sink/first_token_mass"])
def test_the_key_charts_are_key_scalars(required: str) -> None:
    assert required in KEY_SCALARS


def test_a_real_offline_run_logs_few_visible_keys_and_our_config(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env.pop("WANDB_SILENT", None)  # W&B's warnings must be visible to be absent
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sinklab.train",
            *tiny_overrides(tmp_path),
            "logger=wandb",
            "trainer.threads=1",
            f"hydra.run.dir={run_dir}",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "anonymous" not in proc.stdout + proc.stderr
    records = wandb_records(next((run_dir / "wandb").glob("offline-run-*")))
    keys: set[str] = set()
    for record in records:
        if record.WhichOneof("record_type") == "history":
            # a table or chart is a nested item (its path, size, ...) under its key
            keys |= {item.key or item.nested_key[0] for item in record.history.item}
    hidden = {
        r.metric.name
        for r in records
        if r.WhichOneof("record_type") == "metric" and r.metric.options.hidden
    }
    assert not [k for k in keys if "/layer_" in k]
    assert "massive/top1_channel" not in str(sorted(keys))  # codes only in codes/table
    visible = {k for k in keys - hidden if not k.startswith("_") and k != "trainer/global_step"}
    assert {
        "sink/sink1_pct",
        "layers/sink/sink1_pct_table",
        "layers/table",
        "codes/table",
        "probe/attention_maps",
    } <= visible
    assert len(visible) < 30, sorted(visible)
    # the config wandb.init got (the run record) and any update after it (config records)
    configs = [r.run.config for r in records if r.WhichOneof("record_type") == "run"]
    configs += [r.config for r in records if r.WhichOneof("record_type") == "config"]
    top = {item.key or item.nested_key[0] for c in configs for item in c.update} - {"_wandb"}
    ours = set(yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text()))
    assert top == ours, sorted(top ^ ours)
    print(f"W&B keys: {len(keys)} logged, {len(visible)} visible: {sorted(visible)}")
