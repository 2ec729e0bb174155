"""`make gpu-check`'s figure script, run on the CPU (`--device cpu`): CI has no GPU, so this is
where its own code (the paths compared, the probe timings, the projection, the JSON and the
printed table) is exercised before a GPU ever runs it. The figures themselves mean nothing here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sinklab.bench import gpu_check

# the default recipe (Bigram-Backcopy, no corpus to fetch) at its tiny model, a few steps
SMOKE = ["--experiment", "quickstart", "--model", "tiny", "--seq-len", "64", "--batch-size", "4"]
SMOKE += ["--steps", "6", "--warmup", "2", "--repeats", "1", "--probe-repeats", "1"]


def test_cpu_smoke_run_writes_every_figure(tmp_path: Path, capsys) -> None:
    assert gpu_check.main(["--device", "cpu", *SMOKE, "--out", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    (path,) = tmp_path.glob("gpu-check-*.json")
    rec = json.loads(path.read_text())
    assert (rec["device"], rec["precision"], rec["tokens_per_step"]) == (
        "cpu",
        "fp32, not compiled",
        256,
    )
    assert len(rec["sinklab_over_plain"]) == 1 and rec["sinklab_over_plain"][0] > 0
    assert rec["probe_pass_in_steps"] == pytest.approx(rec["probe_pass_s"] / rec["step_s"])
    assert rec["probe_in_run_s"] >= rec["probe_pass_s"] * 0.5 > 0  # the run's pass adds streaming
    # the default run's schedule over 2,000 steps: 0, 1, 2, 4, ..., 256, then every 200
    assert rec["projected_probes"] == 20
    assert 0 < rec["projected_probe_share_pct"] < 100
    assert rec["probe_pass_syncs"] is None and rec["n_layers"] == 4  # counted on CUDA only
    assert "sinklab / plain" in shown and "fp32, not compiled" in shown
    assert "host syncs         not counted (no GPU)" in shown
    counted = gpu_check.render({**rec, "probe_pass_syncs": 7}, rec["seconds"])
    assert "host syncs         7 in one pass (4 layers;" in counted
    assert not (tmp_path / "runs").exists()  # the timed runs are scratch, removed


def test_the_gpu_check_needs_a_realistic_batch_on_cuda_only(capsys) -> None:
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--seq-len", "128", "--batch-size", "32"])  # 4k tokens per step
    assert "--batch-size: seq_len x batch_size must be >= 65536" in capsys.readouterr().err
    assert gpu_check.parse_args(["--device", "cpu", "--seq-len", "128", "--batch-size", "32"])


def test_without_a_gpu_it_says_so_and_succeeds(capsys, monkeypatch) -> None:
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    assert "no CUDA GPU present" in capsys.readouterr().out
