"""The bench's option checks and the reanalysis figures at their smallest counts: every value
an option accepts runs, the rest stop at parse time with a one-line `error: --flag: ...`."""

from __future__ import annotations

import math

import pytest

from sinklab.bench import report
from sinklab.bench.cli import parse_args
from sinklab.bench.costs import ReanalysisCost
from sinklab.bench.sections import reanalysis_record


def test_quick_defaults_and_explicit_values() -> None:
    quick = parse_args(["--quick"])
    assert (quick.repeats, quick.steps, quick.reanalysis, quick.variants) == (2, 8, 2, "default")
    full = parse_args(["--reanalysis", "1", "--steps", "12"])
    assert (full.repeats, full.steps, full.reanalysis, full.variants) == (5, 12, 1, "all")
    assert parse_args(["--reanalysis", "0"]).reanalysis == 0  # 0 skips reanalysis


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--reanalysis", "-1"], "--reanalysis"),
        (["--repeats", "0"], "--repeats"),
        (["--probe-repeats", "0"], "--probe-repeats"),
        (["--threads", "0"], "--threads"),
        (["--steps", "4", "--warmup", "3"], "--warmup"),
    ],
)
def test_unusable_values_are_refused_at_parse_time(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code != 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith(f"bench: error: {flag}: ")


def test_one_reanalysed_checkpoint_has_a_cost_but_no_growth_figures() -> None:
    """`--reanalysis 1` used to crash in `linear_fit` (two points or more)."""
    cost = ReanalysisCost(seconds=[0.25], rss_mb=[800.0])
    assert math.isnan(cost.slope_s_per_checkpoint) and math.isnan(cost.late_over_early)
    record = reanalysis_record(cost, distinct=3)
    assert record["count"] == 1 and record["per_checkpoint_s"].median == 0.25
    rows = report.reanalysis_rows(record)
    assert [r[0].split(" ")[0] for r in rows] == ["reanalysis", "RSS"]  # no growth row
    assert rows[0][1] == "0.250 s (min 0.250, max 0.250)"


def test_two_reanalysed_checkpoints_show_growth() -> None:
    record = reanalysis_record(ReanalysisCost(seconds=[0.2, 0.2], rss_mb=[800.0, 801.0]), 2)
    rows = report.reanalysis_rows(record)
    assert rows[1] == [
        "growth: slope of cumulative time; late-half / early-half cost",
        "0.200 s per checkpoint; 1.00",
    ]
    assert rows[2][1] == "800 MB -> 801 MB (+1.0 MB)"
