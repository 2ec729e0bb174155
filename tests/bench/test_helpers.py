"""Fast checks of the benchmark's helpers: statistics, ordering, MFU arithmetic, schedules,
tables, and that the step clock separates quiet steps from scheduled work."""

from __future__ import annotations

import json
import math

import pytest
import torch

from sinklab.bench import report
from sinklab.bench.costs import ReanalysisCost, project_default_run
from sinklab.bench.lightning_path import Mark, steady_step_seconds
from sinklab.bench.peak import Peak, achieved_flops_per_rank, best_peak, matmul_peak, mfu
from sinklab.bench.profile import bucket_of
from sinklab.bench.recipe import preset
from sinklab.bench.timing import (
    Stamp,
    abba_order,
    linear_fit,
    rates,
    rss_bytes,
    summarize,
    tokens_per_s,
)


def test_summary_median_and_spread() -> None:
    s = summarize([1.0, 3.0, 2.0, 2.0])
    assert s.median == 2.0 and s.min == 1.0 and s.max == 3.0 and s.n == 4
    assert s.spread == pytest.approx(1.0)
    assert s.to_dict()["spread"] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        summarize([])


def test_abba_order_alternates_so_drift_cancels() -> None:
    assert abba_order(4) == [("a", "b"), ("b", "a"), ("a", "b"), ("b", "a")]
    firsts = [o[0] for o in abba_order(6, "x", "y")]
    assert firsts.count("x") == firsts.count("y")


def test_tokens_per_s_is_total_over_total() -> None:
    # Not the mean of per-step rates: one slow step weighs by its time.
    assert tokens_per_s(100, [1.0, 3.0]) == pytest.approx(50.0)
    assert math.isnan(tokens_per_s(100, []))
    r = rates(10, [Stamp(2.0, 1.0), Stamp(2.0, 1.0)])
    assert r.wall == pytest.approx(5.0) and r.cpu == pytest.approx(10.0)


def test_stamp_difference() -> None:
    d = Stamp(5.0, 2.0) - Stamp(1.0, 0.5)
    assert d == Stamp(4.0, 1.5)


def test_mfu_counts_flops_per_rank() -> None:
    # 8 ranks share 8000 global tokens/s: each rank did 1000 tokens/s of work.
    assert achieved_flops_per_rank(8000.0, 1e6, world_size=8) == pytest.approx(1e9)
    assert mfu(8000.0, 1e6, peak_flops=2e9, world_size=8) == pytest.approx(0.5)
    assert mfu(1000.0, 1e6, peak_flops=1e9) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        mfu(1.0, 1.0, 0.0)
    with pytest.raises(ValueError):
        achieved_flops_per_rank(1.0, 1.0, world_size=0)


def test_best_peak_takes_the_best_reading_per_clock() -> None:
    p = best_peak([Peak(1.0, 5.0, "float32", 64), Peak(3.0, 2.0, "float32", 64)])
    assert (p.wall, p.cpu) == (3.0, 5.0)


def test_matmul_peak_is_measured_and_positive() -> None:
    p = matmul_peak("cpu", size=128, repeats=2)
    assert p.wall > 0 and p.dtype == "float32" and p.size == 128


def test_steady_steps_drop_intervals_with_scheduled_work() -> None:
    marks = [
        Mark(1, Stamp(0.0, 0.0), overhead=0.0, validation=0.0),
        Mark(2, Stamp(1.0, 0.9), overhead=0.0, validation=0.0),
        Mark(3, Stamp(3.0, 2.0), overhead=1.0, validation=0.0),  # a probe ran in this interval
        Mark(4, Stamp(4.0, 2.9), overhead=1.0, validation=0.0),
        Mark(5, Stamp(6.0, 4.0), overhead=1.0, validation=1.0),  # validation ran
        Mark(6, Stamp(7.0, 4.9), overhead=1.0, validation=1.0),
    ]
    steady, raw = steady_step_seconds(marks)
    assert raw == [1.0, 2.0, 1.0, 2.0, 1.0]
    assert [s.wall for s in steady] == [1.0, 1.0, 1.0]
    steady, raw = steady_step_seconds(marks, skip=3)
    assert len(raw) == 2 and [s.wall for s in steady] == [1.0]


def test_projection_counts_the_log_spaced_schedule() -> None:
    p = project_default_run(
        1200,
        (256, 200),
        (256, 200),
        200,
        step_s=0.2,
        probe_s=0.4,
        checkpoint_s=0.05,
        validation_s=0.1,
    )
    # 0, 1, 2, 4, ..., 256 (10 steps) plus 200, 400, ..., 1200 (6): 16 events each.
    assert p.n_probes == 16 and p.n_checkpoints == 16 and p.n_validations == 6
    assert p.total_s == pytest.approx(1200 * 0.2 + 16 * 0.4 + 16 * 0.05 + 6 * 0.1)
    assert p.probe_share == pytest.approx(16 * 0.4 / p.total_s)


def test_reanalysis_growth_figures() -> None:
    cost = ReanalysisCost(seconds=[1.0, 1.0, 1.0, 1.0], rss_mb=[100.0, 101.0, 100.5, 100.0])
    assert cost.slope_s_per_checkpoint == pytest.approx(1.0)
    assert cost.late_over_early == pytest.approx(1.0)
    assert cost.rss_growth_mb == pytest.approx(0.0)
    assert linear_fit([1, 2, 3], [2, 4, 6]) == pytest.approx((2.0, 0.0))


def _vm_rss_bytes() -> int:
    """The kernel's own VmRSS line (/proc/self/status, kB): an independent reading."""
    with open("/proc/self/status") as fh:
        line = next(x for x in fh if x.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def test_rss_tracks_a_touched_block_both_ways() -> None:
    mib = 2**20
    assert abs(rss_bytes() - _vm_rss_bytes()) < 4 * mib  # the same counter, two files
    before = rss_bytes()
    block = torch.ones(64 * mib // 4)  # 64 MiB, touched; above glibc's mmap threshold
    grown = rss_bytes()
    assert 60 * mib <= grown - before <= 72 * mib
    del block  # an mmap'd block goes straight back to the kernel
    assert grown - rss_bytes() >= 60 * mib


def test_profile_buckets() -> None:
    assert bucket_of("aten::mm").startswith("matmul")
    assert bucket_of("aten::_scaled_dot_product_flash_attention_for_cpu").startswith(
        "fused attention"
    )
    assert bucket_of("aten::silu_backward").startswith("activation")
    assert bucket_of("aten::mul").startswith("elementwise")
    assert bucket_of("aten::_foreach_mul_").startswith("optimizer")
    assert bucket_of("aten::something_new") == "other"


def test_table_and_outputs(tmp_path) -> None:
    md = report.table(["a", "b"], [[1, 0.5], ["x", None]])
    assert md.splitlines()[0] == "| a | b |" and "| 1 | 0.5 |" in md and "| x | - |" in md
    assert report.pct(0.1234) == "12.3 %" and report.fmt(12345.6) == "12,346"
    md_path, json_path = report.write_outputs(
        tmp_path, "bench-x", md, {"peak": Peak(1.0, 2.0, "float32", 8), "p": tmp_path}
    )
    assert md_path.read_text().startswith("| a | b |")
    assert json.loads(json_path.read_text())["peak"]["cpu"] == 2.0
    assert (tmp_path / "latest.json").exists() and (tmp_path / "latest.md").exists()


def test_model_preset_reads_through_the_group_base() -> None:
    """Presets state only what they change from conf/model/base.yaml; `preset` must see both."""
    tiny = preset("tiny")
    assert tiny["d_model"] == 128 and tiny["pos"] == "rope"
    assert "defaults" not in tiny and "vocab_size" not in tiny and None not in tiny.values()
