"""DDP on the CPU (gloo): two ranks of batch 4 train exactly what one process of batch 8 does,
in one run folder, with one W&B run; a two-job multirun with DDP gives two W&B runs in one group.

The real CLI in subprocesses: Lightning starts rank 1 by re-running sinklab.train, which is
what these tests are about. Each run takes ~30-60 s on two shared cores (process start-up and
gloo rendezvous dominate), hence `slow`.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from sinklab.runs.checkpoints import list_checkpoints, load_checkpoint_state
from sinklab.training.datamodule import SinkDataModule
from sinklab.training.run_config import validate_config
from tests.reliability.helpers import run_cli
from tests.training.conftest import compose_train, tiny_overrides

STEPS = 6
# Same global batch: 2 ranks x 4 windows, or 1 process x 8 windows; the same 16 validation
# windows (rank r evaluates val batches r, r + 2, ...).
DDP = ["trainer=ddp_cpu", "data.batch_size=4", "data.val_batches=4"]
SINGLE = ["trainer.devices=1", "data.batch_size=8", "data.val_batches=2"]
COMMON = [
    "trainer.threads=1",
    "trainer.deterministic=true",
    "callbacks.checkpoint.log_spaced_until=2",
    "callbacks.checkpoint.full_every=3",
    "callbacks.probe.stream.enabled=false",
]


def _text_data(tmp: Path) -> list[str]:
    """A text corpus: its windows are sampled one by one (synthetic data draws whole micro-batches
    from one seed each, so 2 x 4 and 1 x 8 would see different data)."""
    corpus = tmp / "corpus.txt"
    if not corpus.exists():
        words = ["sink", "token", "attention", "head", "value", "norm", "the", "a", "of"]
        gen = torch.Generator().manual_seed(0)
        picks = torch.randint(len(words), (6000,), generator=gen).tolist()
        lines = [" ".join(words[i] for i in picks[j : j + 12]) for j in range(0, 6000, 12)]
        corpus.write_text("\n".join(lines))
    return [
        "data=text_files",
        f"data.text_files.paths=[{corpus}]",
        "data.tokenizer.kind=byte",
        "data.text_files.sample_by=line",
    ]


def _overrides(tmp: Path, extra: list[str]) -> list[str]:
    return tiny_overrides(tmp, STEPS) + _text_data(tmp) + COMMON + extra


def _run(tmp: Path, extra: list[str], run_dir: Path | None = None) -> Path:
    out = tmp / "out"
    args = _overrides(tmp, extra) + [f"paths.output_dir={out}"]
    if run_dir is not None:
        args.append(f"hydra.run.dir={run_dir}")
    proc = run_cli(args, tmp, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _val_losses(run_dir: Path) -> pd.Series:
    table = pd.read_csv(run_dir / "csv" / "metrics.csv")
    return table.dropna(subset=["val/loss"]).set_index("step")["val/loss"]


def test_two_ranks_read_disjoint_halves_of_the_single_process_batch(tmp_path: Path) -> None:
    """Rank r's micro-batch i is windows [4r, 4r + 4) of the one-process batch i of size 8."""

    def datamodule(batch: int) -> SinkDataModule:
        overrides = tiny_overrides(tmp_path) + _text_data(tmp_path) + [f"data.batch_size={batch}"]
        run = validate_config(compose_train(overrides))
        dm = SinkDataModule(run.data, run_dir=tmp_path / f"b{batch}")
        dm.prepare_data()
        dm.setup("fit")
        return dm

    one, two = datamodule(8), datamodule(4)
    for i in range(3):
        whole = one.batch_at(i, 0, 1)["input_ids"]
        halves = [two.batch_at(i, r, 2)["input_ids"] for r in (0, 1)]
        assert torch.equal(torch.cat(halves), whole)
        assert not torch.equal(halves[0], halves[1])


@pytest.mark.slow
def test_ddp_on_cpu_matches_one_process_with_the_same_global_batch(tmp_path: Path) -> None:
    ddp_dir, one_dir = tmp_path / "ddp", tmp_path / "one"
    out = _run(tmp_path, DDP + ["logger=wandb", "logger.mode=offline"], ddp_dir)
    _run(tmp_path, SINGLE, one_dir)

    # One run folder: rank 1 ran inside rank 0's (its Hydra log is there), made none of its own.
    assert not (out / "runs").exists()  # hydra.run.dir was given: no timestamped folder
    assert (ddp_dir / "train_ddp_rank1.log").is_file()
    assert not list(ddp_dir.glob("**/train_ddp_rank1/"))
    summary = json.loads((ddp_dir / "summary.json").read_text())
    assert summary["tokens_seen"] == STEPS * 8 * 32  # 2 ranks x 4 windows x 32 tokens per step
    # Checkpoints and probes written once (rank 0): each step once, same steps as one process.
    steps = [c.step for c in list_checkpoints(ddp_dir)]
    assert steps == [c.step for c in list_checkpoints(one_dir)] == [0, 1, 2, 4, 6]
    probes = pd.read_parquet(ddp_dir / "metrics" / "probes.parquet")
    assert not probes.duplicated(["step", "layer", "head", "metric"]).any()
    assert sorted(probes["step"].unique()) == [0, 1, 2, 4, 6]
    # One W&B run, from rank 0.
    assert len(list((ddp_dir / "wandb").glob("offline-run-*"))) == 1

    # Same losses (val/loss is averaged over ranks) and weights at every checkpoint, to fp32.
    ddp_val, one_val = _val_losses(ddp_dir), _val_losses(one_dir)
    # validation rows at the steps completed (every 2, and the last)
    assert list(ddp_val.index) == list(one_val.index) == [2, 4, 6]
    pd.testing.assert_series_equal(ddp_val, one_val, check_exact=False, rtol=1e-5, atol=1e-6)
    worst = 0.0
    for a, b in zip(list_checkpoints(ddp_dir), list_checkpoints(one_dir), strict=True):
        wa, wb = (
            load_checkpoint_state(a.path)["state_dict"],
            load_checkpoint_state(b.path)["state_dict"],
        )
        for key in wa:
            torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)
            worst = max(worst, float((wa[key] - wb[key]).abs().max()))
    print(
        f"max |val loss diff| {float((ddp_val - one_val).abs().max()):.2e}, max |w diff| {worst:.2e}"
    )


@pytest.mark.slow
def test_multirun_of_two_ddp_jobs_gives_two_wandb_runs_in_one_group(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = _overrides(tmp_path, DDP) + [
        f"paths.output_dir={out}",
        "logger=wandb",
        "logger.mode=offline",
        "experiment_name=ddpgroup",
        "hydra/launcher=local2",
        "trainer.max_steps=2",
        "model.pos=rope,alibi",
        "-m",
    ]
    proc = run_cli(args, tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    sweeps = list((out / "multirun").iterdir())
    assert len(sweeps) == 1
    jobs = sorted(p for p in sweeps[0].iterdir() if p.is_dir() and not p.name.startswith("."))
    # no folder per rank, no second sweep (job folders: <num>_<overrides>)
    assert [p.name.split("_")[0] for p in jobs] == ["0", "1"]
    runs = [p for job in jobs for p in (job / "wandb").glob("offline-run-*")]
    assert len(runs) == 2
    ids = {(job / "wandb_id.txt").read_text() for job in jobs}
    assert len(ids) == 2 and all(any(r.name.endswith(i) for r in runs) for i in ids)
    assert [wandb_run_record(r).run_group for r in runs] == ["ddpgroup", "ddpgroup"]


def wandb_records(offline_run: Path) -> list[Any]:
    """The records of an offline W&B run's transaction log (`run-<id>.wandb`), read with our own
    reader of its framing (LevelDB's log format: 32 KiB blocks of crc32, length, type, bytes;
    wandb 0.31 ships no Python reader)."""
    from wandb.proto import wandb_internal_pb2

    data = next(offline_run.glob("run-*.wandb")).read_bytes()
    assert data[:4] == b":W&B", "not a W&B transaction log"
    block, pos, pending, records = 32768, 7, b"", []
    while pos + 7 <= len(data):
        room = block - pos % block
        if room < 7:  # a block's tail too short for a header is padding
            pos += room
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            pos += room - 7
            continue
        pending += data[pos : pos + length]
        pos += length
        if kind in (1, 4):  # FULL, or LAST of a FIRST/MIDDLE/LAST chain
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def wandb_run_record(offline_run: Path) -> Any:
    """The run record (id, group, name) of an offline W&B run."""
    runs = [r.run for r in wandb_records(offline_run) if r.WhichOneof("record_type") == "run"]
    assert runs, f"no run record in {offline_run}"
    return runs[0]
