"""Sweep job folders named by their overrides, found in job order, labelled for people."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from sinklab.runs.layout import (
    JOB_NAME_MAX,
    NO_OVERRIDES,
    job_dir_name,
    job_dirs,
    job_label,
    job_number,
)
from tests.training.conftest import tiny_overrides


def test_job_dir_name_carries_the_overrides_sorted_without_bookkeeping() -> None:
    overrides = ["trainer.threads=1", "optim.lr=3e-3", "model.pos=alibi", "paths.output_dir=/x"]
    assert job_dir_name(0, overrides) == "0_model.pos=alibi,optim.lr=3e-3"
    assert job_dir_name(7, ["+model.extra=1"]) == "7_+model.extra=1"
    assert job_dir_name(2, ["logger=csv", "trainer.progress_bar=false"]) == "2"
    assert job_dir_name(2, []) == "2"


def test_job_dir_name_is_one_folder_whatever_the_values() -> None:
    name = job_dir_name(1, ["data.files=/home/me/my corpus/*.txt", "tags=[a,b]"])
    assert name == "1_data.files=-home-me-my-corpus-.txt,tags=-a,b"
    assert "/" not in name and " " not in name


def test_long_names_are_cut_with_a_hash_that_keeps_them_apart() -> None:
    common = [f"model.key_{i}=value_{i}" for i in range(20)]
    a = job_dir_name(3, [*common, "seed=1"])
    b = job_dir_name(3, [*common, "seed=2"])
    assert len(a) == len(b) == JOB_NAME_MAX
    assert a.startswith("3_model.key_0=value_0,model.key_10=value_10")  # sorted as text
    assert a != b and a[:-8] == b[:-8]


def test_the_hydra_resolver_names_a_job_from_its_task_overrides() -> None:
    cfg = OmegaConf.create(
        {
            "job": {"num": 4},
            "overrides": {"task": ["model.pos=rope", "paths.cache_dir=/c"]},
            "subdir": "${sinklab_job_dir:${job.num},${overrides.task}}",
        }
    )
    assert cfg.subdir == "4_model.pos=rope"


def test_job_dirs_sort_by_job_number_and_skip_non_runs(tmp_path: Path) -> None:
    for name in ("10_seed=10", "2_seed=2", "0", "1_seed=1", "notes"):
        (tmp_path / name / "probe").mkdir(parents=True)
        (tmp_path / name / "probe" / "probe_set.npz").write_bytes(b"")
    (tmp_path / ".submitit").mkdir()
    (tmp_path / "3_not_a_run").mkdir()
    names = [p.name for p in job_dirs(tmp_path)]
    assert names == ["0", "1_seed=1", "2_seed=2", "10_seed=10", "notes"]
    assert [job_number(tmp_path / n) for n in names] == [0, 1, 2, 10, None]


def test_job_label_reads_the_saved_overrides(tmp_path: Path) -> None:
    job = tmp_path / "0_model.pos=alibi"
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump(["model.pos=alibi", "paths.output_dir=/tmp/x", "optim.lr=0.003"])
    )
    assert job_label(job) == "model.pos=alibi optim.lr=0.003"
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["logger=csv"]))
    assert job_label(job) == NO_OVERRIDES
    assert job_label(tmp_path / "copied_run") == "copied_run"


def test_a_real_multirun_names_its_job_folders(tmp_path: Path) -> None:
    """The real command line, Hydra's basic launcher: folders say which job is which."""
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    args = [*tiny_overrides(tmp_path, steps=2), "trainer.threads=1", "model.pos=rope,alibi"]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sinklab.train",
            "-m",
            *args,
            "hydra.sweep.dir=" + str(tmp_path / "sw"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    jobs = job_dirs(tmp_path / "sw")
    assert [j.name for j in jobs] == [
        "0_debug=tiny,model.pos=rope,trainer.max_steps=2",
        "1_debug=tiny,model.pos=alibi,trainer.max_steps=2",
    ]
    summary = (tmp_path / "sw" / "summary.md").read_text()  # the sweep callback's table
    assert "Every job: debug=tiny trainer.max_steps=2" in summary
    assert (
        "| 1_debug=tiny,model.pos=alibi,trainer.max_steps=2 | model.pos=alibi | finished |"
        in summary
    )
    assert [job_label(j) for j in jobs] == [
        "debug=tiny model.pos=rope trainer.max_steps=2",
        "debug=tiny model.pos=alibi trainer.max_steps=2",
    ]
