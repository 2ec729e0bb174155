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

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sinklab.configs import CONF_DIR
from sinklab.errors import ConfigError
from sinklab.runs.layout import HYDRA_DIR, PROBE_DIR, RunLayout


def fail(message: str, run_dir: Path | None, code: int = 2) -> None:
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


# Exit codes: 2 a bad config or input, 3 a non-finite loss or gradient, 4 the output cannot be written.
EXIT_CONFIG, EXIT_NONFINITE, EXIT_OUTPUT = 2, 3, 4
_WRITE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EEXIST,
}


def describe_os_error(err: OSError) -> str:
    """One line: what failed, on which path, and what to do when the output is full or read-only."""
    name = errno.errorcode.get(err.errno or 0, "")
    where = f" ({err.filename})" if err.filename else ""
    what = err.strerror or str(err)
    hint = ""
    if err.errno in _WRITE_ERRNOS:
        hint = "; the output folder is full or not writable: free space or point paths.output_dir elsewhere"
    return f"cannot write output{where}: {what} [{name}]{hint}" if name else f"{what}{where}{hint}"


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
    from sinklab.training.run_config import validate_config

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        run_cfg = validate_config(cfg)
    except ConfigError as err:
        fail(str(err), run_dir)

    from sinklab.runs.checkpoints import resume_checkpoint
    from sinklab.training.module import NonFiniteLossError
    from sinklab.training.run import train

    auto = resume_checkpoint(run_dir) if run_cfg.checkpoint.auto_resume else None
    if run_cfg.ckpt_path is None and auto is not None:
        # Relaunched into a folder that already trained (a SLURM requeue, the same
        # hydra.run.dir): continue it rather than train over its checkpoints and probe rows.
        if is_rank_zero():
            print(f"resuming from {auto}", file=sys.stderr, flush=True)
        run_cfg.ckpt_path = str(auto)
    target = resumed_run_dir(run_cfg.ckpt_path)
    if target is not None and target != run_dir:
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
        print(f"error: {err}{note}", file=sys.stderr)
        sys.exit(EXIT_NONFINITE)
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
        _print_summary(summary, result.probe_history)
    return summary


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


def _print_summary(summary: dict, probes: dict[int, dict[str, float]]) -> None:
    from sinklab.analysis.names import HEADLINE

    lines = ["", "sinklab run finished"]
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
            f"  {key:18s} {value:.4g}" if isinstance(value, float) else f"  {key:18s} {value}"
        )
    if probes:
        first, last = min(probes), max(probes)
        for metric in HEADLINE:
            if metric in probes[first] and metric in probes[last]:
                lines.append(
                    f"  {metric:18s} step {first}: {probes[first][metric]:.3g} -> step {last}: {probes[last][metric]:.3g}"
                )
    layout = RunLayout(Path(summary["run_dir"]))
    lines += [
        f"  outputs            {layout.root}",
        f"    metrics          {layout.probes_table}",
        f"    checkpoints      {layout.checkpoint_dir}",
        f"    summary          {layout.summary}",
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
    """Run Hydra; an output folder Hydra itself cannot create (read-only, under a file, full)
    becomes one `error:` line and exit 4 instead of a traceback.

    Hydra prints and swallows exceptions unless HYDRA_FULL_ERROR=1, so we set it for the call
    and report the failures we understand; a user who set it keeps the full traceback.
    """
    user_wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        _hydra_main()
    except OSError as err:
        if user_wants_traceback:
            raise
        fail(describe_os_error(err), None, EXIT_OUTPUT)
    except Exception as err:  # Hydra's own errors (bad override syntax, missing key): one line
        if user_wants_traceback or not type(err).__module__.startswith(("hydra", "omegaconf")):
            raise
        fail(" ".join(str(err).split()), None, EXIT_CONFIG)
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


if __name__ == "__main__":
    main()
