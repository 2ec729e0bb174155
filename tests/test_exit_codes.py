"""Every exit code the README lists, one test each, through the real `sinklab-train` command
line (the fault driver of tests/reliability, which patches from the test side only).

0 finished, 2 bad config or input, 3 non-finite loss or gradient, 4 output not writable,
5 finished but skipped more than trainer.max_skipped_share of its batches, 130 interrupted.
Each run that trained leaves a summary.json whose `exit_code` and `status` say the same.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from sinklab.errors import (
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_NONFINITE,
    EXIT_OUTPUT,
    EXIT_SKIPPED,
)
from tests.reliability.helpers import error_line, run_cli, start_cli, tiny


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_exit_0_finished(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli(tiny(tmp_path, 2) + [f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = _summary(run_dir)
    assert (summary["status"], summary["exit_code"]) == ("finished", 0)
    assert summary["reason"] == "reached trainer.max_steps=2"


def test_exit_2_mistyped_group_option(tmp_path: Path) -> None:
    """Hydra's missing-option error is an OSError: it used to leave as exit 4 (output not
    writable) with Hydra's 25-line listing."""
    run_dir = tmp_path / "run"
    proc = run_cli(tiny(tmp_path) + ["variant=sink_tokens", f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == EXIT_CONFIG, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [
        "error: variant: no option 'sink_tokens'; did you mean sink_token? every option is a "
        f"file in {Path(__file__).resolve().parents[1] / 'conf' / 'variant'}/ "
        "(or run sinklab-train --help)"
    ]
    assert not run_dir.exists()


def test_exit_3_nonfinite_loss(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = run_cli(tiny(tmp_path, 6) + [f"hydra.run.dir={run_dir}"], tmp_path, faults="nan_loss=3")
    assert proc.returncode == EXIT_NONFINITE, proc.stderr[-3000:]
    line = error_line(proc.stderr)
    assert line.startswith("error: non-finite training loss (nan) at step 3")
    summary = _summary(run_dir)
    assert (summary["status"], summary["exit_code"]) == ("stopped_nonfinite", 3)
    assert summary["steps_completed"] == summary["last_good_step"] == 3
    # train.log says why the run stopped, with the same line as stderr
    assert (run_dir / "train.log").read_text().splitlines()[-1] == line


def test_exit_4_output_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    proc = run_cli(tiny(tmp_path) + [f"paths.output_dir={blocker / 'sub'}"], tmp_path)
    assert proc.returncode == EXIT_OUTPUT, proc.stderr[-3000:]
    assert error_line(proc.stderr).startswith("error: cannot write output")


def test_exit_5_too_many_skipped_batches(tmp_path: Path) -> None:
    """The issue's diverged run (lr 1e9, skip): every update after the first is non-finite.
    It used to exit 0 with the normal summary and stale losses."""
    run_dir = tmp_path / "run"
    args = ["optim.lr=1e9", "trainer.on_nonfinite=skip", "callbacks.probe.enabled=false"]
    proc = run_cli(tiny(tmp_path, 10) + args + [f"hydra.run.dir={run_dir}"], tmp_path)
    assert proc.returncode == EXIT_SKIPPED, proc.stderr[-3000:]
    summary = _summary(run_dir)
    skipped = summary["skipped_batches"]
    assert skipped >= 8 and summary["skipped_share"] == round(skipped / 10, 4)
    assert (summary["status"], summary["exit_code"]) == ("skipped_too_many", 5)
    assert error_line(proc.stderr) == f"warning: {summary['reason']}"
    assert summary["reason"].startswith(
        f"skipped {skipped} of 10 batches ({100 * skipped / 10:.1f} %), "
        "above trainer.max_skipped_share=0.1"
    )


def test_exit_130_interrupted(tmp_path: Path) -> None:
    """Ctrl-C mid-run: Lightning turns it into exit 1; sinklab exits 130 as a shell would,
    and the summary says where it stopped and what to resume from."""
    run_dir = tmp_path / "run"
    proc = start_cli(tiny(tmp_path, 200) + [f"hydra.run.dir={run_dir}"], tmp_path, "slow=0.05")
    deadline = time.monotonic() + 120
    while not list((run_dir / "checkpoints").glob("step0000004-*.ckpt")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == EXIT_INTERRUPTED, stderr[-3000:]
    summary = _summary(run_dir)
    assert (summary["status"], summary["exit_code"]) == ("interrupted", EXIT_INTERRUPTED)
    assert 4 <= summary["steps_completed"] < 200
    assert summary["reason"] == (
        f"interrupted at step {summary['steps_completed']}; resume with "
        f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"
    )
    assert error_line(stderr) == f"error: {summary['reason']}"


def test_too_many_skipped_batches_in_a_sweep_warn_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """In a multirun a diverged job must not end the sweep: its summary says so, and the
    sweep summary shows its status; the command's exit code is the sweep's (0)."""
    args = [o for o in tiny(tmp_path, 6) if not o.startswith("paths.output_dir")]
    args += ["optim.lr=1e9", "trainer.on_nonfinite=skip", "callbacks.probe.enabled=false"]
    proc = run_cli(["-m", *args, "model.pos=rope,alibi", f"paths.output_dir={tmp_path}"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = sorted(tmp_path.glob("multirun/*/*/summary.json"))
    assert len(summaries) == 2
    for path in summaries:
        summary = json.loads(path.read_text())
        assert (summary["status"], summary["exit_code"]) == ("skipped_too_many", EXIT_SKIPPED)
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning: skipped")]
    assert len(warnings) == 2
