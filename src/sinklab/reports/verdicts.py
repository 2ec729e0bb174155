"""A study's evidence and its verdicts: the per-run statistics a report view needs, kept in a
small JSON file beside the docs, and everything judged from them.

Why a file: the tables, the summary of docs/results.md and the README's results paragraph are
all rendered from the same `Evidence`, so a test can re-render them from the committed files
and fail when any of them was edited by hand (tests/reports/test_generated_results.py), and
`scripts/study_report.py --summary` can rebuild the summary without the study folders.

The rule for one direction (`directions.Direction`), in order:
1. **untestable here** when the direction is `blind` (the statistic cannot see the mechanism),
   when either side has fewer than two seeds, or when its `control` does not show what it must;
2. otherwise the difference setting - baseline over seeds (seed-paired t when the two share
   seeds, Welch t otherwise; `evidence.difference_interval`), its two-sided p, and the p after
   Holm's correction over the view's testable directions (they share baselines, so they are one
   family). **reproduced** / **contradicted**: the Holm-adjusted p < 0.05 with the mean on the
   published / the other side; **inconclusive** otherwise. The raw verdict (the unadjusted
   interval) is printed beside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
from scipy import stats as scipy_stats

from sinklab.atomic import atomic_write
from sinklab.reports import evidence
from sinklab.reports.directions import Control, Direction
from sinklab.reports.evidence import Interval

UNTESTABLE = "untestable here"
ALPHA = 0.05


@dataclass(frozen=True)
class JobStats:
    """One finished run: its setting's label, its seed, and every statistic's value."""

    label: str
    seed: str
    values: dict[str, float | None]


@dataclass(frozen=True)
class Correlation:
    """A rank correlation across every run of a view (Spearman), e.g. how the cost of evicting
    BOS follows the first-token mass."""

    x: str  # statistics' keys
    y: str
    text: str  # what it asks, in words


@dataclass
class Evidence:
    """What a view's verdicts, statistics table and summary rows are computed from."""

    view: str
    study: str
    steps: int
    tokens: int
    jobs: list[JobStats] = field(default_factory=list)
    # Rule-based claims a view judges itself (the reference-frame claims): one dict per claim,
    # with at least "verdict"; kept so the summary can quote them.
    claims: list[dict[str, str]] = field(default_factory=list)

    def labels(self) -> list[str]:
        """The settings in first-seen order."""
        return list(dict.fromkeys(job.label for job in self.jobs))

    def by_seed(self, label: str, statistic: str) -> dict[str, float]:
        """{seed: value} of `statistic` over the runs of `label` (missing values left out)."""
        found = {}
        for job in self.jobs:
            value = job.values.get(statistic)
            if job.label == label and value is not None and not math.isnan(value):
                found[job.seed] = float(value)
        return found

    def save(self, path: Path) -> Path:
        text = json.dumps(asdict(self), indent=1, sort_keys=True) + "\n"
        atomic_write(path, lambda fh: fh.write(text.encode()))
        return path

    @classmethod
    def load(cls, path: Path) -> Evidence:
        data = json.loads(Path(path).read_text())
        data["jobs"] = [JobStats(**job) for job in data["jobs"]]
        return cls(**data)


@dataclass(frozen=True)
class Verdict:
    """One direction judged: the interval of the difference, raw and Holm-adjusted p, the raw
    and the adjusted verdict (equal to "untestable here" for both when it is), and why."""

    direction: Direction
    difference: Interval | None
    p_holm: float
    raw: str
    verdict: str
    reason: str = ""
    comparisons: int = 0

    def text(self) -> str:
        """`reproduced (-0.1 [-0.2, -0.05]; Holm p 0.01)`, or the untestable reason."""
        if self.verdict == UNTESTABLE:
            return f"{UNTESTABLE} ({self.reason})"
        assert self.difference is not None
        return f"{self.verdict} ({self.difference.text()}; Holm p {p_text(self.p_holm)})"


def p_text(p: float) -> str:
    if math.isnan(p):
        return "-"
    return "< 0.001" if p < 0.001 else f"{p:.2g}"


def control_failure(ev: Evidence, control: Control) -> str:
    """'' when enough of the control's seeds show what they must; otherwise the reason, with
    the count."""
    values = ev.by_seed(control.label, control.statistic)
    if not values:
        return f"no runs of {control.label} to check {control.statistic}"
    showing = sum(value >= control.threshold for value in values.values())
    if showing >= control.share * len(values):
        return ""
    return (
        f"the control {control.label} shows no effect to contrast: {control.shows} in "
        f">= {control.share:.0%} of seeds needed, {showing}/{len(values)} seeds"
    )


def judge(ev: Evidence, directions: Sequence[Direction]) -> list[Verdict]:
    """Every direction of the view that has runs on both sides, judged by the module's rule."""
    pending: list[tuple[Direction, Interval | None, str]] = []
    for d in directions:
        setting = ev.by_seed(d.setting, d.statistic)
        baseline = ev.by_seed(d.baseline, d.statistic)
        if not setting or not baseline:
            continue
        reason = d.blind
        if not reason and min(len(setting), len(baseline)) < 2:
            reason = "fewer than two seeds a side"
        if not reason and d.control is not None:
            reason = control_failure(ev, d.control)
        diff = evidence.difference_interval(
            list(setting.values()),
            list(baseline.values()),
            seeds=list(setting),
            baseline_seeds=list(baseline),
        )
        pending.append((d, diff, reason))
    tested = [diff.p for d, diff, reason in pending if not reason]
    adjusted = iter(evidence.holm(tested))
    verdicts = []
    for d, diff, reason in pending:
        if reason:
            verdicts.append(Verdict(d, diff, math.nan, UNTESTABLE, UNTESTABLE, reason, len(tested)))
            continue
        p_holm = next(adjusted)
        verdicts.append(
            Verdict(
                d,
                diff,
                p_holm,
                raw=evidence.verdict(diff, d.sign),
                verdict=evidence.verdict(diff, d.sign, p=p_holm, alpha=ALPHA),
                comparisons=len(tested),
            )
        )
    return verdicts


def verdict_table(verdicts: Sequence[Verdict]) -> pd.DataFrame:
    """The rows of a view's verdict table: raw and adjusted side by side."""
    records = []
    for v in verdicts:
        d, diff = v.direction, v.difference
        records.append(
            {
                "published direction": d.claim,
                "paper's metric": d.paper_metric,
                "compared": f"{d.setting} vs {d.baseline}",
                "statistic": d.statistic,
                "difference [95 % CI]": diff.text() if diff is not None else "-",
                "CI": diff.method if diff is not None else "-",
                "p": p_text(diff.p) if diff is not None else "-",
                "Holm p": p_text(v.p_holm),
                "raw verdict": v.raw,
                "verdict": v.verdict if v.verdict != UNTESTABLE else f"{UNTESTABLE}: {v.reason}",
            }
        )
    return pd.DataFrame.from_records(records)


def statistic_text(ev: Evidence, label: str, statistic: str) -> str:
    """One setting's `statistic` over its seeds: "k/n" seeds for `sink_reached`, otherwise
    mean [95 % t interval]; "-" without values. The tables and the summary both quote this."""
    values = ev.by_seed(label, statistic)
    if not values:
        return "-"
    if statistic == "sink_reached":
        return f"{round(sum(values.values()))}/{len(values)}"
    return evidence.mean_interval(list(values.values())).text()


def statistics_table(ev: Evidence, statistics: Sequence[tuple[str, str]]) -> pd.DataFrame:
    """One row per setting: each (title, statistic) as `statistic_text` gives it."""
    records = []
    for label in ev.labels():
        seeds = sum(job.label == label for job in ev.jobs)
        record: dict[str, object] = {"run": label, "seeds": seeds}
        for title, statistic in statistics:
            record[title] = statistic_text(ev, label, statistic)
        records.append(record)
    return pd.DataFrame.from_records(records)


def correlation_text(ev: Evidence, corr: Correlation) -> str:
    """Spearman's rho of two statistics over every run that has both, with its p and n."""
    pairs = [
        (job.values.get(corr.x), job.values.get(corr.y))
        for job in ev.jobs
        if job.values.get(corr.x) is not None and job.values.get(corr.y) is not None
    ]
    pairs = [(x, y) for x, y in pairs if not (math.isnan(x) or math.isnan(y))]
    if len(pairs) < 3:
        return f"{corr.text}: fewer than 3 runs with both {corr.x} and {corr.y}"
    xs, ys = [x for x, _ in pairs], [y for _, y in pairs]
    if len(set(xs)) < 2 or len(set(ys)) < 2:
        return f"{corr.text}: undefined, {corr.x if len(set(xs)) < 2 else corr.y} is constant"
    rho, p = scipy_stats.spearmanr(xs, ys)
    return (
        f"{corr.text}: Spearman rho {float(rho):.2f} (p {p_text(float(p))}) over {len(pairs)} "
        f"runs ({corr.x} against {corr.y})"
    )
