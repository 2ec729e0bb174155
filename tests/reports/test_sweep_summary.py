"""The sweep-level table: one row per job, its distinguishing overrides, its headline figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from omegaconf import OmegaConf

from sinklab.analysis import names
from sinklab.analysis.records import append_rows
from sinklab.reports.sweep_summary import SweepSummaryCallback, sweep_table, write_sweep_summary

ROOT = Path(__file__).resolve().parents[2]


def _job(sweep: Path, name: str, overrides: list[str], summary: dict | None, rows: list) -> None:
    job = sweep / name
    (job / "probe").mkdir(parents=True)
    (job / "probe" / "probe_set.npz").write_bytes(b"")
    (job / ".hydra").mkdir()
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    if summary is not None:
        (job / "summary.json").write_text(json.dumps(summary))
    if rows:
        frame = pd.DataFrame(rows, columns=["step", "layer", "head", "metric", "value"])
        append_rows(job / "metrics" / "probes.parquet", frame)


def _sweep(tmp_path: Path) -> Path:
    sweep = tmp_path / "sweep"
    rope_rows = [
        (0, -1, -1, names.SINK1, 0.0),
        (10, -1, -1, names.SINK1, 50.0),
        (10, -1, -1, names.FIRST_TOKEN_MASS, 0.4),
        (10, 0, -1, names.TOP1_OVER_MEDIAN, 3.0),
        (10, 1, -1, names.TOP1_OVER_MEDIAN, 7.0),
        (10, 1, 2, names.TOP1_OVER_MEDIAN, 99.0),  # a head row: not a layer figure
        (5, -1, -1, "quant/ppl_increase/per_tensor_static", 0.2),  # sparser schedule
        (10, -1, -1, "slot_mass/sink0", 0.6),
    ]
    alibi_rows = [(0, -1, -1, names.SINK1, 0.0), (10, -1, -1, names.SINK1, 12.5)]
    shared = ["trainer.max_steps=30", "paths.output_dir=/x"]
    _job(sweep, "0_model.pos=rope", ["model.pos=rope", *shared], _summary(4.0, 4.25), rope_rows)
    _job(
        sweep,
        "1_model.pos=alibi",
        ["model.pos=alibi", *shared],
        {**_summary(5.0, None), "status": "stopped: non-finite loss", "skipped_batches": 3},
        alibi_rows,
    )
    _job(sweep, "10_model.pos=none", ["model.pos=none", *shared], None, [])
    return sweep


def _summary(train: float, val: float | None) -> dict:
    return {
        "final_train_loss": train,
        "final_val_loss": val,
        "tokens_seen": 1280,
        "fit_seconds": 2.0,
    }


def test_sweep_table_has_one_row_per_job_with_its_figures(tmp_path: Path) -> None:
    table = sweep_table(_sweep(tmp_path))
    assert list(table["job"]) == ["0_model.pos=rope", "1_model.pos=alibi", "10_model.pos=none"]
    assert list(table["overrides"]) == ["model.pos=rope", "model.pos=alibi", "model.pos=none"]
    assert list(table["status"]) == [
        "finished",
        "stopped: non-finite loss",
        "no summary (running or failed)",
    ]
    rope = table.iloc[0]
    assert rope["final train loss"] == 4.0 and rope["final val loss"] == 4.25
    assert rope["Sink_1 %"] == 50.0 and table.iloc[1]["Sink_1 %"] == 12.5
    assert rope["first-token mass"] == 0.4
    assert rope["top-1/median (max layer)"] == 7.0
    assert rope["W8A8 static PPL +"] == 0.2
    assert rope["slot_mass sink0"] == 0.6
    assert table.iloc[1]["skipped batches"] == 3 and pd.isna(rope["skipped batches"])
    assert table.iloc[2][["final train loss", "Sink_1 %"]].isna().all()
    # no job has a streaming evaluation: no empty streaming columns
    assert "R_win shift" not in table.columns and "R_4 shift" not in table.columns


def test_written_files_agree_and_name_the_shared_overrides(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path)
    csv_path, md_path = write_sweep_summary(sweep)
    assert pd.read_csv(csv_path)["Sink_1 %"].tolist()[:2] == [50.0, 12.5]
    md = md_path.read_text().splitlines()
    assert md[0] == "# Sweep sweep: 3 jobs"
    assert md[2] == "Every job: trainer.max_steps=30"
    assert md[4].startswith("| job | overrides | status | final train loss | final val loss |")
    assert md[6].startswith("| 0_model.pos=rope | model.pos=rope | finished | 4 | 4.25 |")
    assert len(md) == 4 + 2 + 3


def test_the_hydra_callback_writes_the_summary_and_never_raises(tmp_path: Path, capsys) -> None:
    sweep = _sweep(tmp_path)
    SweepSummaryCallback().on_multirun_end(
        OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep)}}})
    )
    assert (sweep / "summary.md").is_file() and (sweep / "summary.csv").is_file()
    assert "sweep summary: " in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    SweepSummaryCallback().on_multirun_end(
        OmegaConf.create({"hydra": {"sweep": {"dir": str(empty)}}})
    )
    assert not (empty / "summary.md").exists()


def test_the_script_prints_the_table_and_refuses_a_non_sweep(tmp_path: Path) -> None:
    script = str(ROOT / "scripts" / "sweep_summary.py")
    done = subprocess.run(
        [sys.executable, script, str(_sweep(tmp_path))], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "| 1_model.pos=alibi | model.pos=alibi | stopped: non-finite loss |" in done.stdout
    bad = subprocess.run(
        [sys.executable, script, str(tmp_path / "nothing")], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.splitlines() == [
        f"error: {tmp_path / 'nothing'}: no job folders with a probe set (not a sweep?)"
    ]
