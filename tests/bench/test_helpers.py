"""Fast checks of the benchmark's helpers: statistics, ordering, MFU arithmetic, schedules,
tables, and that the step clock separates quiet steps from scheduled work."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sinklab.bench import report
from sinklab.bench.costs import ReanalysisCost, project_default_run
from sinklab.bench.lightning_path import Mark, steady_step_seconds
from sinklab.bench.peak import Peak, achieved_flops_per_rank, best_peak, matmul_peak, mfu
from sinklab.bench.profile import bucket_of
from sinklab.bench.recipe import preset
from sinklab.bench.timing import Stamp, abba_order, linear_fit, rates, summarize, tokens_per_s


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


# Runs in a fresh interpreter: RSS is process-wide, so inside the test process it moves with
# whatever earlier tests left behind (a garbage collection freeing their tensors, a thread they
# started), and a delta there depends on the test order. Here nothing else runs: one thread, no
# garbage collection, and numpy plus the helper's module (which imports nothing heavy) loaded.
_MEASURE = """
import gc, json
import numpy as np
from sinklab.bench.rss import rss_bytes

def vm_rss():  # the kernel's own VmRSS line (/proc/self/status, kB): an independent reading
    with open("/proc/self/status") as fh:
        return int(next(x for x in fh if x.startswith("VmRSS:")).split()[1]) * 1024

gc.disable()
out = {"statm": rss_bytes(), "status": vm_rss()}
before = rss_bytes()
block = np.empty(64 * 2**20, dtype=np.uint8)  # above glibc's mmap threshold: its own mapping
out["reserved"] = rss_bytes() - before  # mapped but not touched: not resident
block.fill(1)
out["touched"] = rss_bytes() - before
del block  # an mmap'd block goes straight back to the kernel
out["released"] = rss_bytes() - before
print(json.dumps(out))
"""


def _measure_in_a_fresh_process() -> dict[str, int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads Linux /proc")
def test_rss_tracks_a_touched_block_both_ways() -> None:
    """rss_bytes follows a 64 MiB block in, and out again: it is the current resident size,
    not the peak (which never comes back down) nor the virtual size (which grows untouched).

    The margin is 4 MiB each way, 1/16 of the block: in the fresh process only the block moves
    RSS, give or take a few pages of interpreter bookkeeping, one pymalloc arena (1 MiB) and a
    transparent huge page's rounding at the block's edge (2 MiB)."""
    mib = 2**20
    margin = 4 * mib
    r = _measure_in_a_fresh_process()
    assert abs(r["statm"] - r["status"]) < margin, r  # the same counter, two files
    assert abs(r["reserved"]) < margin, r
    assert abs(r["touched"] - 64 * mib) < margin, r
    assert abs(r["released"]) < margin, r


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
