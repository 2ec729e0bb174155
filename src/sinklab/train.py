"""`sinklab-train` / `python -m sinklab.train`: the Hydra entry point for training.

Examples:
    sinklab-train                                  # the default recipe (see README)
    sinklab-train model.pos=alibi optim.lr=3e-3
    sinklab-train -m model.pos=rope,alibi,learned,none
    sinklab-train ckpt_path=outputs/runs/<run>/checkpoints/last.ckpt   # resume that run
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from sinklab.configs import CONF_DIR, run_hydra
from sinklab.errors import (
    EXIT_CONFIG,
    EXIT_INTERRUPTED,
    EXIT_NONFINITE,
    EXIT_OUTPUT,
    EXIT_SKIPPED,
    ConfigError,
    describe_os_error,
)
from sinklab.runs.layout import HYDRA_DIR, PROBE_DIR, RunLayout


def fail(message: str, run_dir: Path | None, code: int = EXIT_CONFIG) -> None:
    """Print one line, remove the half-made run folder, exit non-zero."""
    print(f"error: {message}", file=sys.stderr)
    if run_dir is not None and run_dir.exists() and _only_hydra_files(run_dir):
        shutil.rmtree(run_dir, ignore_errors=True)
    sys.exit(code)


def _only_hydra_files(run_dir: Path) -> bool:
    """True when the folder holds nothing but what Hydra wrote before our code ran, and the
    probe set `train` derives from the config first (a resumed run's folder has checkpoints)."""
    allowed = {HYDRA_DIR, "train.log", PROBE_DIR}
    return all(p.name in allowed or p.suffix == ".log" for p in run_dir.iterdir())


def resumed_run_dir(ckpt_path: str | None) -> Path | None:
    """A checkpoint inside `<run>/checkpoints/` resumes into `<run>` itself."""
    if not ckpt_path:
        return None
    parent = Path(ckpt_path).resolve().parent
    run = RunLayout(parent.parent)
    if parent == run.checkpoint_dir and run.probe_dir.exists():
        return run.root
    return None


def run(cfg: DictConfig) -> dict:
    # Validate first, with the Lightning-free config code: a bad key costs no Lightning import.
    from sinklab.training.run_config import resumed_config, validate_config

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    target = resumed_run_dir(cfg.get("ckpt_path"))
    try:
        if target is not None and (target / HYDRA_DIR / "config.yaml").is_file():
            # ckpt_path=<run>/checkpoints/last.ckpt alone: the run's own config, plus the keys
            # this command line changes (a DDP child, which writes no .hydra/, reads the same).
            cfg = resumed_config(target, str(cfg.ckpt_path), list(hydra_cfg.overrides.task))
            if target != run_dir and is_rank_zero():
                print(f"resuming {target} with its saved config", file=sys.stderr, flush=True)
        run_cfg = validate_config(cfg)
    except ConfigError as err:
        fail(str(err), run_dir)

    from sinklab.runs.checkpoints import resume_checkpoint
    from sinklab.training.module import NonFiniteLossError
    from sinklab.training.run import RunInterrupted, train

    auto = resume_checkpoint(run_dir) if run_cfg.checkpoint.auto_resume else None
    if run_cfg.ckpt_path is None and auto is not None:
        # Relaunched into a folder that already trained (a SLURM requeue, the same
        # hydra.run.dir): continue it rather than train over its checkpoints and probe rows.
        if is_rank_zero():
            print(f"resuming from {auto}", file=sys.stderr, flush=True)
        run_cfg.ckpt_path = str(auto)
    target = resumed_run_dir(run_cfg.ckpt_path)
    if target is not None and target != run_dir:
        try:  # refuse before anything is written into the run folder
            _check_resume(run_cfg)
        except ConfigError as err:
            fail(str(err), run_dir)
        # Keep this invocation's config beside the run it continues, then drop the new folder.
        stamp = time.strftime("%Y%m%d-%H%M%S")
        shutil.copytree(
            RunLayout(run_dir).hydra_dir, target / "resumes" / stamp, dirs_exist_ok=True
        )
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir = target
    group = run_cfg.experiment_name
    name = run_cfg.run_name or hydra_cfg.job.override_dirname or run_dir.name
    use_job_command_for_ddp_children(run_dir, run_cfg.ckpt_path)
    try:
        result = train(run_cfg, run_dir, group=group, name=name)
    except ConfigError as err:
        fail(str(err), run_dir)
    except NonFiniteLossError as err:
        kept = resume_checkpoint(run_dir)
        note = f"; last good checkpoint: {kept}" if kept else ""
        stop(f"error: {err}{note}", run_dir, EXIT_NONFINITE)
    except RunInterrupted as err:
        stop(f"error: {err}", run_dir, EXIT_INTERRUPTED)
    except OSError as err:
        fail(describe_os_error(err), run_dir, EXIT_OUTPUT)
    except RuntimeError as err:
        # torch.save reports a failed write (a full disk) as a RuntimeError around the OSError.
        cause = _os_error_in(err)
        if cause is None:
            raise
        fail(describe_os_error(cause), run_dir, EXIT_OUTPUT)
    summary = result.summary()
    if is_rank_zero():
        _print_summary(summary)
    if result.exit_code == EXIT_SKIPPED:
        if hydra_cfg.mode == RunMode.MULTIRUN:  # one diverged job must not end the sweep:
            print(f"warning: {result.reason}", file=sys.stderr, flush=True)  # its summary says
        else:
            stop(f"warning: {result.reason}", run_dir, EXIT_SKIPPED)
    return summary


def _check_resume(run_cfg: Any) -> None:
    """The checkpoint's model against the config's, before the run folder is touched; a
    vocab_size left to the tokenizer is taken as the checkpoint's (`train` checks it again
    once the tokenizer is loaded)."""
    from sinklab.training.run import compare_model_configs, read_resume_checkpoint

    saved, _ = read_resume_checkpoint(run_cfg.ckpt_path)
    model = {**run_cfg.model}
    model["vocab_size"] = model.get("vocab_size") or saved.get("vocab_size")
    compare_model_configs(saved, model)


def stop(line: str, run_dir: Path, code: int) -> None:
    """Print the line that says why the run stopped, keep it in the run's train.log (which
    otherwise ends mid-training), exit with `code`; the run folder and its summary.json stay."""
    print(line, file=sys.stderr, flush=True)
    if is_rank_zero():
        try:
            with open(run_dir / "train.log", "a") as log:
                log.write(line + "\n")
        except OSError:
            pass  # the line is on stderr; a log we cannot write must not hide it
    sys.exit(code)


def is_rank_zero() -> bool:
    """Rank 0 of a distributed run (or no distributed run): Lightning reads it from the
    environment its launcher sets (LOCAL_RANK, RANK, SLURM_PROCID), before any Trainer exists."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def ddp_child_command(run_dir: Path, ckpt_path: str | None, local_rank: int) -> list[str]:
    """How rank `local_rank` re-runs this job: this job's own overrides (never `-m` and the
    sweep's lists, which would start a second sweep), in this job's folder (never a new one of
    its own), writing no `.hydra/` there, resuming from the checkpoint rank 0 chose."""
    overrides = [o for o in HydraConfig.get().overrides.task if not o.startswith("ckpt_path=")]
    if ckpt_path:
        overrides.append(f'ckpt_path="{ckpt_path}"')
    return [
        sys.executable,
        "-m",
        "sinklab.train",
        *overrides,
        f'hydra.run.dir="{run_dir}"',
        f"hydra.job.name=train_ddp_rank{local_rank}",
        "hydra.output_subdir=null",
    ]


def use_job_command_for_ddp_children(run_dir: Path, ckpt_path: str | None) -> None:
    """Make Lightning's subprocess launcher (DDP on one node) start the other ranks with
    `ddp_child_command`. Its own Hydra command re-uses `sys.argv` and `hydra.run.dir`, which in a
    multirun start a new sweep per rank and a run folder per rank."""
    from hydra.utils import get_original_cwd
    from lightning.pytorch.strategies.launchers import subprocess_script

    def command(local_rank: int) -> tuple[list[str], str]:
        return ddp_child_command(run_dir, ckpt_path, local_rank), get_original_cwd()

    subprocess_script._hydra_subprocess_cmd = command


def _print_summary(summary: dict) -> None:
    width = 22  # the label column: wide enough for sink/first_token_mass
    lines = ["", f"sinklab run {summary['status']}: {summary['reason']}"]
    for key in (
        "final_train_loss",
        "final_val_loss",
        "tokens_seen",
        "tokens_per_s",
        "fit_seconds",
        "probe_share_pct",
        "quant_share_pct",
    ):
        value = summary.get(key)
        lines.append(
            f"  {key:{width}s} {value:.4g}"
            if isinstance(value, float)
            else f"  {key:{width}s} {value}"
        )
    if summary.get("resumed_from"):
        parts = ", ".join(str(step) for step in summary["resumed_from"])
        lines.append(f"  {'resumed_from':{width}s} step {parts} (figures cover the whole run)")
    if summary.get("skipped_batches"):
        lines.append(
            f"  {'skipped_batches':{width}s} {summary['skipped_batches']} of "
            f"{summary['steps_completed']} (last update at step {summary['last_good_step']})"
        )
    lines.append(
        f"  {'probes':{width}s} {summary['probe_total_seconds']} s, of which W8A8 "
        f"{summary['quant_seconds']} s, interventions {summary['intervention_seconds']} s"
    )
    if summary.get("probe_hint"):
        lines.append(f"  {'':{width}s} {summary['probe_hint']}")
    for metric, fig in summary.get("headline", {}).items():
        if fig["first_step"] == fig["last_step"]:
            lines.append(f"  {metric:{width}s} step {fig['last_step']}: {fig['last']:.3g}")
        else:
            lines.append(
                f"  {metric:{width}s} step {fig['first_step']}: {fig['first']:.3g} -> "
                f"step {fig['last_step']}: {fig['last']:.3g}"
            )
    layout = RunLayout(Path(summary["run_dir"]))
    lines += [
        f"  {'outputs':{width}s} {layout.root}",
        f"    {'metrics':{width - 2}s} {layout.probes_table}",
        f"    {'checkpoints':{width - 2}s} {layout.checkpoint_dir}",
        f"    {'summary':{width - 2}s} {layout.summary}",
    ]
    print("\n".join(lines), flush=True)


def _os_error_in(err: BaseException) -> OSError | None:
    """The OSError behind an exception (its cause or context chain), if any."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    if "file write failed" in str(err) or "No space left" in str(err):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _hydra_main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    """Run Hydra, turning its failures into one `error:` line (`configs.run_hydra`)."""
    run_hydra(_hydra_main, "train", "sinklab-train")


if __name__ == "__main__":
    main()
