"""`make reproduce`'s plan: which studies it runs, how many jobs each, and how long that should
take on this machine, printed before anything starts.

A study's size comes from its Hydra config (`conf/experiment/<study>.yaml`): the product of its
sweeper's value lists, `trainer.max_steps`, and the launcher's parallel jobs. Its time comes
from the runs this machine already made of it: the median `fit_seconds` per step of the
summaries under `outputs/studies/<study>/` whose model and batch have the size the config now
asks for (runs of an earlier recipe are not counted), scaled to the configured steps, plus a
start-up cost per job, a study's post-step and its report. A study never run here borrows the
median seconds per step of the studies that were; with none, the reference rate measured for
the study recipe. The estimate is only as good as those runs: a study measured on a loaded
machine estimates high, one from an idle machine low when the machine is busy.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sinklab.reports import study_catalog

# The catalogue's studies that `make reproduce` runs, in its order (study_catalog.STUDIES).
STUDIES: tuple[str, ...] = study_catalog.reproduced()
# Per job, around its fit, in a sweep whose joblib workers are already up (Hydra compose, data,
# final checkpoint and safetensors): 6-7 s on the 2-core VM (6 jobs of min_context_sweep in
# 81 s with fits of 20-22.6 s). Per study: the sweep's start and its report (figures, tables).
STARTUP_S = 7.0
STUDY_S = 30.0
# The study recipe's fit seconds per step, probes included (conf/experiment/study.yaml, one
# thread, two jobs side by side): 20-22.6 s for 300 steps on Bigram-Backcopy, 24.5 s on text
# at BPE 1024, measured 2026-11-28. Used only when no study has runs of the recipe here.
REFERENCE_S_PER_STEP = 0.075
# Work after the sweep, per job: the studies' post-steps (e.g. attention_sweep re-runs its final
# checkpoints at 4 bits with three prefixed sinks), as the catalogue declares them.
POST_STEP_S: dict[str, float] = {
    name: study.post_step.seconds_per_job
    for name, study in study_catalog.STUDIES.items()
    if study.post_step is not None
}
BUDGET_S = 2 * 3600.0  # issue 18: `make reproduce` in at most 2 hours on 2 cores


@dataclass(frozen=True)
class StudyPlan:
    """One study's size, its estimated wall time, and what the estimate rests on."""

    name: str
    jobs: int
    steps: int
    parallel: int
    seconds_per_step: float | None  # None: no runs of this study on this machine
    basis: str

    def estimate_s(self, fallback_s_per_step: float | None) -> float:
        per_step = self.seconds_per_step or fallback_s_per_step
        if per_step is None:
            return math.nan
        per_job = STARTUP_S + per_step * self.steps
        post = POST_STEP_S.get(self.name, 0.0) * self.jobs
        return math.ceil(self.jobs / self.parallel) * per_job + post + STUDY_S


def sweep_size(params: dict[str, str]) -> int:
    """Jobs of a Hydra sweep: the product of the value counts of `hydra.sweeper.params`,
    parsed by Hydra's own override grammar (so `a,b`, `range(0,5)` and quoted lists count
    as Hydra counts them)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    size = 1
    for key, value in params.items():
        (override,) = parser.parse_overrides([f"{key}={value}"])
        size *= len(list(override.sweep_string_iterator())) if override.is_sweep_override() else 1
    return size


# The keys that size a step: runs that differ in any of them ran another recipe.
SIZE_KEYS: tuple[str, ...] = ("model.d_model", "data.seq_len", "data.batch_size")


def recipe_size(cfg: Any) -> tuple[Any, ...]:
    """The values of SIZE_KEYS in a config (None where one is missing)."""
    from omegaconf import OmegaConf

    return tuple(OmegaConf.select(cfg, key, default=None) for key in SIZE_KEYS)


def recorded_seconds_per_step(
    study_dir: Path, size: tuple[Any, ...] | None = None
) -> tuple[float | None, int]:
    """Median fit seconds per step over the finished jobs of a study folder, and their count;
    with `size`, only the jobs of that recipe size (`recipe_size`)."""
    from omegaconf import OmegaConf

    rates = []
    for summary in sorted(study_dir.glob("*/summary.json")):
        try:
            cfg = OmegaConf.load(summary.parent / ".hydra" / "config.yaml")
            if size is not None and recipe_size(cfg) != size:
                continue
            data = json.loads(summary.read_text())
            if data.get("status", "finished") != "finished":  # stopped early: no full rate
                continue
            steps = int(data["tokens_seen"]) / _tokens_per_step(cfg)
            rates.append(float(data["fit_seconds"]) / steps)
        except (OSError, ValueError, KeyError, ZeroDivisionError):
            continue
    return (statistics.median(rates) if rates else None), len(rates)


def _tokens_per_step(cfg: Any) -> float:
    from omegaconf import OmegaConf

    accumulate = OmegaConf.select(cfg, "trainer.accumulate_grad_batches", default=1) or 1
    return float(cfg.data.batch_size * cfg.data.seq_len * accumulate)


def plan_study(name: str, studies_dir: Path) -> StudyPlan:
    """The study's sweep from its composed config, and its recorded cost on this machine."""
    from hydra import compose, initialize_config_dir

    from sinklab.configs import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=[f"experiment={name}"], return_hydra_config=True
        )
    params = {str(k): str(v) for k, v in (cfg.hydra.sweeper.get("params") or {}).items()}
    parallel = int(cfg.hydra.launcher.get("n_jobs") or 1)
    rate, n = recorded_seconds_per_step(studies_dir / name, recipe_size(cfg))
    basis = (
        f"{n} runs of this recipe in {studies_dir / name}"
        if n
        else "no runs of this recipe here: the other studies' median, or the reference rate"
    )
    return StudyPlan(name, sweep_size(params), int(cfg.trainer.max_steps), parallel, rate, basis)


def fallback_rate(plans: Sequence[StudyPlan]) -> float:
    """The median seconds per step of the studies with recorded runs; REFERENCE_S_PER_STEP
    when none has any."""
    rates = [p.seconds_per_step for p in plans if p.seconds_per_step is not None]
    return statistics.median(rates) if rates else REFERENCE_S_PER_STEP


def render_plan(plans: Sequence[StudyPlan]) -> str:
    """The plan as a table with a total, and the budget it is held to."""
    fallback = fallback_rate(plans)
    lines = [
        f"{'study':<24} {'jobs':>5} {'steps':>6} {'parallel':>8} {'est. min':>9}  basis",
    ]
    total = 0.0
    for p in plans:
        est = p.estimate_s(fallback)
        total += 0.0 if math.isnan(est) else est
        shown = "?" if math.isnan(est) else f"{est / 60:.0f}"
        lines.append(f"{p.name:<24} {p.jobs:>5} {p.steps:>6} {p.parallel:>8} {shown:>9}  {p.basis}")
    verdict = "within" if total <= BUDGET_S else "OVER"
    lines.append(
        f"total: {sum(p.jobs for p in plans)} jobs, about {total / 3600:.1f} h "
        f"({verdict} the {BUDGET_S / 3600:.0f} h budget of issue 18)"
    )
    return "\n".join(lines)
