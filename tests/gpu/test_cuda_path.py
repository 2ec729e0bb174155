"""The CUDA path end to end (issue 19, item 7): the real `sinklab-train` with `trainer=gpu`
(bf16-mixed, torch.compile) trains a few steps, probes and checkpoints on its schedule, and its
attention runs on a fused SDPA kernel. Skipped where there is no CUDA GPU (CI, the CPU VM);
`make gpu-check` runs it on one.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from sinklab.analysis.records import read_rows
from sinklab.runs.checkpoints import list_checkpoints, load_checkpoint_model
from sinklab.runs.layout import RunLayout
from tests.helpers.runif import RunIf
from tests.reliability.helpers import run_cli
from tests.training.conftest import tiny_overrides

pytestmark = [pytest.mark.gpu, RunIf(min_cuda_gpus=1, bf16_cuda=True, compile=True)]

STEPS = 8
BATCH, SEQ = 8, 128
SCHEDULE = [0, 1, 2, 4, 8]  # log-spaced to 2, then every 4: probes and checkpoints alike
GPU = [
    "trainer=gpu",  # bf16-mixed, compiled
    "logger=csv",  # W&B is not installed on every GPU machine
    "model.d_model=128",  # 4 heads of 32: a head size the flash kernel takes
    f"model.max_seq_len={SEQ}",
    f"data.seq_len={SEQ}",
    f"data.batch_size={BATCH}",
    "callbacks.checkpoint.log_spaced_until=2",
    "callbacks.checkpoint.every=4",
    "callbacks.checkpoint.full_every=4",
]


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One short GPU run through the real CLI (a subprocess), shared by the checks below."""
    tmp = tmp_path_factory.mktemp("cuda")
    run_dir = tmp / "run"
    proc = run_cli(
        tiny_overrides(tmp, STEPS) + GPU + [f"hydra.run.dir={run_dir}"], tmp, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return run_dir


def test_losses_are_finite_and_every_token_counted(cuda_run: Path) -> None:
    layout = RunLayout(cuda_run)
    config = (layout.hydra_config).read_text()
    assert "precision: bf16-mixed" in config and "compile: true" in config
    losses = pd.read_csv(layout.csv_dir / "metrics.csv")["train/loss"].dropna()
    assert len(losses) >= STEPS - 1 and losses.map(math.isfinite).all()
    summary = json.loads(layout.summary.read_text())
    assert math.isfinite(summary["final_train_loss"])
    assert summary["tokens_seen"] == STEPS * BATCH * SEQ


def test_probe_rows_are_written_at_every_scheduled_step(cuda_run: Path) -> None:
    rows = read_rows(RunLayout(cuda_run).probes_table)
    assert sorted(rows["step"].unique()) == SCHEDULE
    mass = rows[(rows["metric"] == "sink/first_token_mass") & (rows["head"] >= 0)]
    assert len(mass) == 2 * len(SCHEDULE) * 4  # 2 layers x 5 steps x 4 heads
    assert mass["value"].between(0.0, 1.0).all()  # a probability, finite
    assert not rows.duplicated(["step", "layer", "head", "metric"]).any()


def test_checkpoints_load_and_hold_the_exported_weights(cuda_run: Path) -> None:
    from safetensors.torch import load_file

    ckpts = list_checkpoints(cuda_run)
    assert [c.step for c in ckpts] == SCHEDULE
    model, info = load_checkpoint_model(ckpts[-1].path)
    assert info.step == STEPS
    exported = load_file(str(RunLayout(cuda_run).safetensors))
    state = model.state_dict()
    for key, tensor in exported.items():  # no `_orig_mod.` from the compiled module
        assert torch.equal(state[key], tensor), key
    ids = torch.randint(0, model.cfg.vocab_size, (2, SEQ), device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
        assert torch.isfinite(model.cuda()(ids).float()).all()


def test_attention_runs_on_a_fused_kernel_compiled_and_eager(cuda_run: Path) -> None:
    """Eager: the bench's check (profiled op names, then the flash backend forced). Compiled,
    as training runs it: the profiled fwd + bwd must show flash or memory-efficient SDPA."""
    from torch.profiler import ProfilerActivity, profile

    from sinklab.bench.kernels import attention_kernel_report

    model, info = load_checkpoint_model(list_checkpoints(cuda_run)[-1].path)
    report = attention_kernel_report(info.model_config.to_dict(), "run", device="cuda", seq_len=SEQ)
    assert report.flash and report.forced_flash_ok, report

    model = model.cuda().train()
    model.compile()
    ids = torch.randint(0, model.cfg.vocab_size, (BATCH, SEQ), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        model(ids).float().sum().backward()  # compile outside the profiled step
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            model(ids).float().sum().backward()
        torch.cuda.synchronize()
    names = {evt.key.lower() for evt in prof.key_averages()}
    fused = [n for n in names if "flash" in n or "efficient_attention" in n or "fmha" in n]
    assert fused, sorted(n for n in names if "attention" in n or "sdp" in n)
    assert not any("scaled_dot_product_attention_math" in n for n in names)
