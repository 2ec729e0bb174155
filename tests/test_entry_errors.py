"""A mistyped group option or key, in both entry points: exit 2, one line naming it, the
nearest valid names, and where every option or key is listed. Hydra's own answers were a
25-line listing (exit 4 for a group option, its error being an OSError), or a '+key' hint
that leads to a second error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sinklab.configs import CONF_DIR
from sinklab.errors import did_you_mean, nearest

KEY_HINT = "every key is listed by {tool} --cfg job (and in docs/configuration.md)"


def _cli(module: str, args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    return subprocess.run(
        [sys.executable, "-m", module, *args, f"paths.output_dir={tmp / 'out'}"],
        cwd=tmp,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.parametrize(
    "arg,line",
    [
        (
            "variant=sink_tokens",
            f"variant: no option 'sink_tokens'; did you mean sink_token? every option is a file "
            f"in {Path(CONF_DIR) / 'variant'}/ (or run sinklab-train --help)",
        ),
        (
            "experiment=quickstrat",
            f"experiment: no option 'quickstrat'; did you mean quickstart? every option is a "
            f"file in {Path(CONF_DIR) / 'experiment'}/ (or run sinklab-train --help)",
        ),
        (
            "modle.pos=rope",
            "modle.pos: unknown key; did you mean model.pos? "
            + KEY_HINT.format(tool="sinklab-train"),
        ),
        (
            "trainer.max_step=5",
            "trainer.max_steps: unknown key".replace("max_steps", "max_step")
            + "; did you mean trainer.max_steps? "
            + KEY_HINT.format(tool="sinklab-train"),
        ),
        (
            "+modle.pos=rope",  # the '+' Hydra suggested: sinklab's own check, same suggestion
            "modle: unknown top-level key; did you mean model? known keys: callbacks, "
            "ckpt_path, data, experiment_name, logger, model, notes, optim, paths, run_name, "
            "seed, tags, trainer",
        ),
    ],
    ids=["group-option", "experiment", "key", "nested-key", "plus-key"],
)
def test_train_mistyped_name_is_one_line_with_a_suggestion(
    tmp_path: Path, arg: str, line: str
) -> None:
    proc = _cli("sinklab.train", ["debug=tiny", arg], tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [f"error: {line}"]
    assert not list((tmp_path / "out").glob("runs/*")), "no run folder is left behind"


@pytest.mark.parametrize(
    "arg,line",
    [
        (
            "targte=outputs/runs/x",
            "targte: unknown key; did you mean target? " + KEY_HINT.format(tool="sinklab-analyze"),
        ),
        (
            "stram.cache_len=8",
            "stram.cache_len: unknown key; did you mean stream.cache_len? "
            + KEY_HINT.format(tool="sinklab-analyze"),
        ),
    ],
    ids=["target", "nested-key"],
)
def test_analyze_mistyped_key_is_one_line_with_a_suggestion(
    tmp_path: Path, arg: str, line: str
) -> None:
    """It used to exit 1 with Hydra's raw five-line error."""
    proc = _cli("sinklab.analyze", [arg], tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [f"error: {line}"]


def test_nearest_prefers_the_same_section_by_its_last_part() -> None:
    keys = ["model.pos", "model.mlp", "model.norm", "optim.lr", "optim.min_lr_ratio", "optim"]
    assert nearest("model.poss", keys) == ["model.pos"]
    assert nearest("modle.pos", keys) == ["model.pos"]
    assert nearest("optim.lrr", keys) == ["optim.lr"]
    # a shared section prefix alone is no evidence: 'weight' is nothing like 'size'
    assert nearest("outer.inner.weight", ["outer.inner.size", "outer.inner.colour"]) == []
    assert did_you_mean("zzz", keys) == ""
    assert did_you_mean("gated", ["gated_head", "gated_channel", "sigmoid"]) == (
        " did you mean gated_head?"
    )


def test_analyze_names_sweep_jobs_by_their_overrides(tmp_path: Path) -> None:
    """`sinklab-analyze` printed `0: measured 7`; the user had to open .hydra/overrides.yaml."""
    from sinklab.analyze import describe_target

    sweep = tmp_path / "sweep"
    for name, overrides in [
        ("0", ["model.pos=rope", "trainer.max_steps=4"]),  # the old numbered folders
        ("1_model.pos=alibi", ["model.pos=alibi"]),  # folders named by their overrides
    ]:
        (sweep / name / ".hydra").mkdir(parents=True)
        (sweep / name / ".hydra" / "overrides.yaml").write_text(
            "".join(f"- {o}\n" for o in overrides)
        )
    assert describe_target("0", str(sweep)) == "0 (model.pos=rope trainer.max_steps=4)"
    assert describe_target("1_model.pos=alibi", str(sweep)) == "1 (model.pos=alibi)"
    job = sweep / "1_model.pos=alibi"  # one job as the target
    assert describe_target(job.name, str(job)) == "1 (model.pos=alibi)"
    (tmp_path / "20261207-201245-quickstart" / ".hydra").mkdir(parents=True)
    run = tmp_path / "20261207-201245-quickstart"  # a run: its own name, and no overrides
    (run / ".hydra" / "overrides.yaml").write_text("[]\n")
    assert describe_target(run.name, str(run)) == f"{run.name} (no overrides)"
    assert describe_target("smollm2", "smollm2") == "smollm2"  # not a folder: as before
