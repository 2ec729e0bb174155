"""Log-spaced checkpoints hold weights only; last.ckpt holds the full state and is the only
resume point; reanalysis loads both kinds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sinklab.runs.checkpoints import (
    is_full_state,
    list_checkpoints,
    load_checkpoint_model,
    load_checkpoint_state,
)
from tests.reliability.helpers import run_in_process, tiny

STEPS = 6
SCHEDULE = [
    "callbacks.checkpoint.log_spaced_until=2",
    "callbacks.checkpoint.every=4",
    "callbacks.checkpoint.full_every=4",
    "callbacks.probe.enabled=false",
]


def test_lean_log_spaced_checkpoints_and_a_full_last(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    code, line = run_in_process(tiny(tmp_path, STEPS) + SCHEDULE, run_dir, capsys)
    assert code == 0, line
    ckpts = list_checkpoints(run_dir)
    assert [c.step for c in ckpts] == [0, 1, 2, 4, 6]
    last = load_checkpoint_state(run_dir / "checkpoints" / "last.ckpt")
    assert is_full_state(last) and last["global_step"] == STEPS
    assert len(last["optimizer_states"][0]["state"]) > 0  # AdamW moments are there
    final = load_checkpoint_state(ckpts[-1].path)
    assert not is_full_state(final)
    assert "lr_schedulers" not in final and "callbacks" not in final
    # Same weights in both kinds at the final step; reanalysis rebuilds the model from the lean one.
    for key, value in last["state_dict"].items():
        assert torch.equal(final["state_dict"][key], value)
    model, info = load_checkpoint_model(ckpts[-1].path)
    assert info.step == STEPS and info.tokens_seen == STEPS * 4 * 32
    for key, value in model.state_dict().items():
        assert torch.equal(value, final["state_dict"][f"model.{key}"])
    # AdamW keeps two moments per weight: the full file is about three times the lean one.
    lean_size = ckpts[-1].path.stat().st_size
    full_size = (run_dir / "checkpoints" / "last.ckpt").stat().st_size
    assert 2.5 * lean_size < full_size < 3.5 * lean_size

    # Resuming from a weights-only checkpoint is refused in one line.
    code, line = run_in_process(
        tiny(tmp_path, STEPS) + SCHEDULE + [f"ckpt_path={ckpts[2].path}"],
        tmp_path / "again",
        capsys,
    )
    assert code == 2
    assert line.startswith("error: ckpt_path: ") and "holds weights only" in line
    assert "last.ckpt" in line
