"""The frames claims' rules at their boundaries: claim 1 judged by its interval's bounds (never
its mean), claim 2 counting agreement only across encoding families, and claim 3 counting the
same unit (setting majorities) on both sides."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sinklab.analysis.frames import FRAME_CODE
from sinklab.reports.evidence import Interval
from sinklab.reports.frames_study import (
    EARLY_FRACTION,
    LATE_FRACTION,
    bidirectional_verdict,
    early_verdict,
    encoding_verdict,
    frames_claims,
)
from tests.reports.test_frames_study import Job

CLAIM_1 = "frames form in the earliest stages of training"
CLAIM_2 = "the position encoding influences the frame type"
CLAIM_3 = "bidirectional frames belong to encoders"


def _formed_at(percent: int, cls: str = "centralized") -> pd.DataFrame:
    """Model-row classes of a 100-step run (10 tokens a step) whose frame forms for good at
    step `percent`: its emergence share is percent / 100."""
    steps = sorted({0, percent, 100})
    classes = [cls if step >= percent else "none" for step in steps]
    return pd.DataFrame(
        [
            dict(step=s, tokens_seen=10 * s, layer=-1, head=-1, metric="frames/class", value=c)
            for s, c in zip(steps, [float(FRAME_CODE[c]) for c in classes], strict=True)
        ]
    )


def _t95(shares: list[float]) -> tuple[float, float, float]:
    """(mean, low, high) of the 95 % Student-t interval, computed here apart from evidence."""
    x = np.array(shares)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return float(x.mean()), float(x.mean() - half), float(x.mean() + half)


def _claims_of(jobs: list[Job]) -> pd.DataFrame:
    return frames_claims(jobs).set_index("claim (Ruscio et al. 2025)")


# --- claim 1: the interval's bounds decide ---------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "expected"),
    [
        (Interval(0.20, 0.10, 0.30, 5), "inconclusive"),  # mean early, upper bound not
        (Interval(0.20, 0.10, 0.24, 5), "reproduced"),  # entirely below 25 %
        (Interval(0.20, 0.10, EARLY_FRACTION, 5), "inconclusive"),  # touching is not below
        (Interval(0.70, 0.55, 0.90, 5), "contradicted"),  # entirely above 50 %
        (Interval(0.60, 0.45, 0.75, 5), "inconclusive"),  # mean late, lower bound not
        (Interval(0.60, LATE_FRACTION, 0.75, 5), "inconclusive"),
        (Interval(0.10, math.nan, math.nan, 1), "inconclusive"),  # one run has no interval
    ],
)
def test_claim_one_is_judged_by_the_bounds_not_the_mean(interval: Interval, expected: str) -> None:
    assert early_verdict(interval) == expected


@pytest.mark.parametrize(
    ("percents", "expected"),
    [
        ([16, 32, 16], "inconclusive"),  # mean 0.21 < 25 %, upper bound 0.44
        ([8, 16, 16, 8, 16], "reproduced"),  # upper bound 0.18
        ([64, 100, 100, 64, 100], "contradicted"),  # lower bound 0.61
        ([32, 100, 64], "inconclusive"),  # mean 0.65 > 50 %, lower bound below 0
    ],
)
def test_claim_one_from_runs_uses_the_t_interval_of_the_emergence_share(
    percents: list[int], expected: str
) -> None:
    shares = [p / 100 for p in percents]
    mean, low, high = _t95(shares)
    if expected == "inconclusive":  # each inconclusive case is a mean-vs-bounds boundary
        assert (mean < EARLY_FRACTION < high) or (low < LATE_FRACTION < mean)
    jobs = [Job({"variant": "decoder", "model.pos": "rope"}, _formed_at(p)) for p in percents]
    claim = _claims_of(jobs).loc[CLAIM_1]
    assert claim["verdict"] == expected
    n = len(percents)
    assert claim["here"] == (
        f"emergence at {mean:.2g} [{low:.2g}, {high:.2g}] of the run "
        f"(95 % t interval, {n} runs with a frame)"
    )


def test_frames_table_reports_the_t_interval_of_the_emergence() -> None:
    from sinklab.reports.frames_study import frames_table

    percents = [8, 16, 32]
    jobs = [Job({"model.pos": "rope"}, _formed_at(p)) for p in percents]
    row = frames_table(jobs).iloc[0]
    mean, low, high = _t95([p / 100 for p in percents])
    assert row["emerged, share of run"] == f"{mean:.2g} [{low:.2g}, {high:.2g}]"
    k_mean, k_low, k_high = _t95([10 * p / 1e3 for p in percents])  # 10 tokens a step
    assert row["emerged, k tokens"] == f"{k_mean:.3g} [{k_low:.3g}, {k_high:.3g}]"


# --- claim 2: agreement counts only across a relative and an absolute encoding ---------------


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        # only absolute encodings formed a frame (text at 300 steps): cannot say
        ({"learned": "centralized", "sinusoidal": "centralized", "rope": "none"}, None),
        # only relative / no-position encodings formed one: cannot say either
        ({"rope": "centralized", "alibi": "centralized", "none": "centralized"}, None),
        # both families, all agreeing: the encoding does not influence the type
        ({"none": "centralized", "sinusoidal": "centralized", "alibi": "none"}, "contradicted"),
        # types differ, even within one family: the encoding influences the type
        ({"learned": "centralized", "sinusoidal": "distributed"}, "reproduced"),
        ({"rope": "centralized", "learned": "centralized", "alibi": "mixed"}, "inconclusive"),
        ({"rope": "centralized", "learned": "none"}, None),  # one frame: whether, not which
    ],
)
def test_encoding_verdict_per_objective(cells: dict[str, str], expected: str | None) -> None:
    assert encoding_verdict(cells) == expected


def _settled(cls: str) -> pd.DataFrame:
    """A run whose final class is `cls` ("none": no frame at any probe)."""
    return _formed_at(2, cls)


def _jobs(cells: dict[tuple[str, str], list[str]]) -> list[Job]:
    """Jobs by (objective, pos), one per final class listed."""
    return [
        Job({"variant": objective, "model.pos": pos}, _settled(cls))
        for (objective, pos), classes in cells.items()
        for cls in classes
    ]


def test_the_text_sweep_with_frames_only_under_absolute_encodings_is_inconclusive() -> None:
    """frames_text_sweep's final majorities: the decoders' frames are all absolute encodings."""
    c, n = "centralized", "none"
    cells = {
        ("decoder", "alibi"): [n] * 5,
        ("decoder", "learned"): [c] * 4 + [n],
        ("decoder", "none"): [n] * 5,
        ("decoder", "rope"): [n] * 5,
        ("decoder", "sinusoidal"): [c] * 5,
        ("encoder", "alibi"): [n] * 5,
        ("encoder", "learned"): [c, n, n, c, c],  # 3 of 5: mixed
        ("encoder", "none"): [n, n, n, c, n],
        ("encoder", "rope"): [n] * 5,
        ("encoder", "sinusoidal"): [n] * 5,
    }
    claim = _claims_of(_jobs(cells)).loc[CLAIM_2]
    assert claim["verdict"] == "inconclusive"  # the old rule said contradicted
    assert claim["here"] == (
        "decoder: alibi none, learned centralized, none none, rope none, sinusoidal centralized"
        " (frames only with absolute encodings: not counted); "
        "encoder: alibi none, learned mixed, none none, rope none, sinusoidal none"
    )
    # the same decoders once RoPE forms the same frame: now the encoding is shown not to matter
    cells[("decoder", "rope")] = [c] * 5
    assert _claims_of(_jobs(cells)).loc[CLAIM_2, "verdict"] == "contradicted"


def test_an_objective_with_one_family_only_does_not_block_another_that_contradicts() -> None:
    c, n = "centralized", "none"
    cells = {
        ("decoder", "rope"): [c] * 3,
        ("decoder", "learned"): [c] * 3,
        ("encoder", "rope"): [n] * 3,
        ("encoder", "learned"): [c] * 3,
        ("encoder", "sinusoidal"): [c] * 3,
    }
    claim = _claims_of(_jobs(cells)).loc[CLAIM_2]
    assert claim["verdict"] == "contradicted"
    assert claim["here"].endswith("(frames only with absolute encodings: not counted)")
    relative_only = {("decoder", "rope"): [c] * 3, ("decoder", "alibi"): [c] * 3}
    claim = _claims_of(_jobs(relative_only)).loc[CLAIM_2]
    assert claim["verdict"] == "inconclusive"
    assert claim["here"] == (
        "decoder: alibi centralized, rope centralized"
        " (frames only with relative or no position encodings: not counted)"
    )


# --- claim 3: setting majorities on both sides -----------------------------------------------

POSITIONS = ("rope", "alibi", "learned", "sinusoidal", "none")


def _sweep(
    bidirectional_runs: dict[tuple[str, str], int], other: str = "centralized"
) -> dict[tuple[str, str], list[str]]:
    """Five seeds in each of 5 encodings x 2 objectives; the named settings have that many
    bidirectional seeds, every other seed ends `other`."""
    return {
        (objective, pos): ["bidirectional"] * bidirectional_runs.get((objective, pos), 0)
        + [other] * (5 - bidirectional_runs.get((objective, pos), 0))
        for objective in ("decoder", "encoder")
        for pos in POSITIONS
    }


@pytest.mark.parametrize(
    "bidirectional_runs",
    [
        {("encoder", "sinusoidal"): 1},  # Bigram-Backcopy: 1 of 25 encoder runs
        {("encoder", "rope"): 1, ("encoder", "sinusoidal"): 1},  # end token: 2 of 25
        {("encoder", "sinusoidal"): 2},  # 2 of 5 in one setting: mixed, not a majority
    ],
)
def test_one_or_two_bidirectional_encoder_runs_of_25_are_inconclusive(
    bidirectional_runs: dict[tuple[str, str], int],
) -> None:
    claim = _claims_of(_jobs(_sweep(bidirectional_runs))).loc[CLAIM_3]
    assert claim["verdict"] == "inconclusive"
    runs = sum(bidirectional_runs.values())
    assert claim["here"].startswith(
        "bidirectional majority (2/3 of seeds) in 0 of 5 encoder and 0 of 5 decoder settings; "
        f"bidirectional final class in {runs} encoder and 0 decoder runs; encoder classes: "
    )


def test_claim_three_counts_the_same_unit_on_both_sides() -> None:
    # an encoder majority reproduces; a lone decoder seed (not a majority) no longer blocks it
    lone_decoder = {("encoder", "sinusoidal"): 4, ("decoder", "rope"): 1}
    claim = _claims_of(_jobs(_sweep(lone_decoder))).loc[CLAIM_3]
    assert claim["verdict"] == "reproduced"
    assert claim["here"].startswith(
        "bidirectional majority (2/3 of seeds) in 1 of 5 encoder and 0 of 5 decoder settings; "
        "bidirectional final class in 4 encoder and 1 decoder runs"
    )
    # a decoder majority contradicts, whatever the encoders do
    decoder_major = {("decoder", "rope"): 4, ("encoder", "sinusoidal"): 5}
    assert _claims_of(_jobs(_sweep(decoder_major))).loc[CLAIM_3, "verdict"] == "contradicted"
    # the mirror of the inconclusive encoder case: one decoder seed of 25 decides nothing
    assert (
        _claims_of(_jobs(_sweep({("decoder", "rope"): 1}))).loc[CLAIM_3, "verdict"]
        == "inconclusive"
    )
    # encoders whose frames are all of another type: no bidirectional frame to place
    assert _claims_of(_jobs(_sweep({}, "distributed"))).loc[CLAIM_3, "verdict"] == "inconclusive"


@pytest.mark.parametrize(
    ("majorities", "expected"),
    [
        ({("encoder", "rope"): "bidirectional", ("decoder", "rope"): "centralized"}, "reproduced"),
        ({("encoder", "rope"): "bidirectional", ("decoder", "rope"): "mixed"}, "reproduced"),
        (
            {("encoder", "rope"): "bidirectional", ("decoder", "rope"): "bidirectional"},
            "contradicted",
        ),
        (
            {("encoder", "rope"): "centralized", ("decoder", "rope"): "bidirectional"},
            "contradicted",
        ),
        ({("encoder", "rope"): "mixed", ("decoder", "rope"): "centralized"}, "inconclusive"),
        ({("encoder", "rope"): "none", ("decoder", "rope"): "none"}, "inconclusive"),
    ],
)
def test_bidirectional_verdict_by_setting_majority(
    majorities: dict[tuple[str, str], str], expected: str
) -> None:
    assert bidirectional_verdict(majorities) == expected
