"""The verdict rule of reports/verdicts.py on hand-built evidence with known answers: untestable
when blind, one-seeded or without a control effect; Holm across a section; Spearman."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from sinklab.reports import verdicts
from sinklab.reports.directions import Control, Direction, sinks
from sinklab.reports.verdicts import UNTESTABLE, Correlation, Evidence, JobStats


def _evidence(settings: dict[str, list[float]], statistic: str = "ftm_auc", **extra) -> Evidence:
    jobs = []
    for label, values in settings.items():
        for seed, value in enumerate(values):
            stats = {statistic: value, **{k: v[label][seed] for k, v in extra.items()}}
            jobs.append(JobStats(label, str(seed), stats))
    return Evidence("v", "s", 300, 614_400, jobs)


BASE = [0.20, 0.22, 0.18, 0.21, 0.19]


def _lower(setting: str = "x=1", control: Control | None = None, blind: str = "") -> Direction:
    return Direction(setting, "x=0", "ftm_auc", -1, "x lowers it", control=control, blind=blind)


def test_a_clear_drop_is_reproduced_with_a_paired_interval_and_its_p() -> None:
    ev = _evidence({"x=0": BASE, "x=1": [b - 0.1 for b in BASE]})
    (v,) = verdicts.judge(ev, [_lower()])
    assert v.verdict == v.raw == "reproduced"
    assert v.difference is not None and v.difference.method == "paired t"
    assert v.difference.mean == pytest.approx(-0.1)
    assert v.comparisons == 1 and v.p_holm == pytest.approx(v.difference.p)


def test_a_blind_direction_is_untestable_whatever_the_difference() -> None:
    ev = _evidence({"x=0": BASE, "x=1": [b - 0.1 for b in BASE]})
    (v,) = verdicts.judge(ev, [_lower(blind="the oracle lacks BOS too")])
    assert v.verdict == v.raw == UNTESTABLE
    assert v.text() == f"{UNTESTABLE} (the oracle lacks BOS too)"
    assert v.comparisons == 0  # not counted in the Holm family


def test_one_seed_a_side_is_untestable() -> None:
    ev = _evidence({"x=0": [0.2], "x=1": [0.1]})
    (v,) = verdicts.judge(ev, [_lower()])
    assert v.verdict == UNTESTABLE and v.reason == "fewer than two seeds a side"


def test_a_control_without_a_sink_makes_a_removal_untestable_and_says_how_many_seeds() -> None:
    reached = {"x=0": [0.0, 0.0, 1.0, 0.0, 0.0], "x=1": [0.0] * 5}
    ev = _evidence({"x=0": BASE, "x=1": [b + 0.04 for b in BASE]}, sink_reached=reached)
    (v,) = verdicts.judge(ev, [_lower(control=sinks("x=0"))])
    assert v.verdict == UNTESTABLE
    assert "1/5 seeds" in v.reason and "x=0" in v.reason
    # The same runs with a sinking control: the (wrong-side) difference is judged.
    reached["x=0"] = [1.0, 1.0, 1.0, 0.0, 1.0]
    ev = _evidence({"x=0": BASE, "x=1": [b + 0.04 for b in BASE]}, sink_reached=reached)
    (v,) = verdicts.judge(ev, [_lower(control=sinks("x=0"))])
    assert v.verdict == "contradicted"


def test_holm_turns_a_raw_reproduction_inconclusive_when_the_section_tests_several() -> None:
    # Three settings against one baseline: one strong effect, two weak ones.
    noise = [0.010, -0.012, 0.008, -0.006, 0.0]
    ev = _evidence(
        {
            "x=0": BASE,
            "x=1": [b - 0.1 + n for b, n in zip(BASE, noise, strict=True)],
            "x=2": [b - 0.012 + n for b, n in zip(BASE, noise, strict=True)],
            "x=3": [b - 0.011 + n for b, n in zip(BASE, noise, strict=True)],
        }
    )
    judged = verdicts.judge(ev, [_lower("x=1"), _lower("x=2"), _lower("x=3")])
    assert [v.comparisons for v in judged] == [3, 3, 3]
    raw_p = [v.difference.p for v in judged]
    # Holm by hand: sort ascending, multiply by (m - rank), keep monotone, cap at 1.
    order = sorted(range(3), key=lambda i: raw_p[i])
    expected, running = [0.0] * 3, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (3 - rank) * raw_p[i]))
        expected[i] = running
    assert [v.p_holm for v in judged] == pytest.approx(expected)
    weak = judged[1]
    assert weak.difference.p < 0.05 < weak.p_holm  # the data make this case
    assert weak.raw == "reproduced" and weak.verdict == "inconclusive"
    assert judged[0].verdict == "reproduced"


def test_the_table_prints_raw_and_adjusted_side_by_side() -> None:
    ev = _evidence({"x=0": BASE, "x=1": [b - 0.1 for b in BASE]})
    table = verdicts.verdict_table(verdicts.judge(ev, [_lower(), _lower("x=1", blind="why")]))
    assert list(table.columns) == [
        "published direction",
        "paper's metric",
        "compared",
        "statistic",
        "difference [95 % CI]",
        "CI",
        "p",
        "Holm p",
        "raw verdict",
        "verdict",
    ]
    assert table["verdict"].tolist() == ["reproduced", f"{UNTESTABLE}: why"]
    assert table["Holm p"].tolist()[1] == "-"


def test_evidence_round_trips_through_its_file(tmp_path: Path) -> None:
    ev = _evidence({"x=0": BASE, "x=1": [None, 0.1, 0.2, 0.3, 0.4]})
    ev.claims = [{"claim": "c", "verdict": "inconclusive"}]
    loaded = Evidence.load(ev.save(tmp_path / "e" / "v.json"))
    assert loaded == ev
    assert loaded.by_seed("x=1", "ftm_auc") == {"1": 0.1, "2": 0.2, "3": 0.3, "4": 0.4}


def test_statistics_table_counts_reached_seeds_and_gives_t_intervals() -> None:
    reached = {"x=0": [1.0, 1.0, 0.0, 1.0, 1.0], "x=1": [0.0] * 5}
    ev = _evidence({"x=0": [1.0, 2.0, 3.0, 4.0, 5.0], "x=1": BASE}, sink_reached=reached)
    table = verdicts.statistics_table(ev, (("AUC", "ftm_auc"), ("reached", "sink_reached")))
    assert table["reached"].tolist() == ["4/5", "0/5"]
    half = 2.7764451051977987 * math.sqrt(2.5 / 5)
    assert table["AUC"][0] == f"3 [{3 - half:.3g}, {3 + half:.3g}]"
    assert table["seeds"].tolist() == [5, 5]


def test_spearman_is_one_for_a_monotone_pair_and_needs_three_runs() -> None:
    ev = _evidence({"a": [1.0, 2.0, 3.0, 4.0]}, y={"a": [10.0, 11.0, 30.0, 31.0]})
    text = verdicts.correlation_text(ev, Correlation("ftm_auc", "y", "Q"))
    assert text.startswith("Q: Spearman rho 1.00") and "over 4 runs" in text
    short = _evidence({"a": [1.0, 2.0]}, y={"a": [1.0, 2.0]})
    assert "fewer than 3 runs" in verdicts.correlation_text(short, Correlation("ftm_auc", "y", "Q"))
