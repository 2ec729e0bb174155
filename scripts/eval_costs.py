"""What each evaluation costs on one run's newest checkpoint, side by side: a probe pass, the
run's streaming evaluation, the full streaming grid, and one W8A8 evaluation (medians of
interleaved repeats after a warm-up, in seconds and in probe passes).

python scripts/eval_costs.py outputs/runs/<run> --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from sinklab.analysis.config import MetricsConfig
from sinklab.analysis.pipeline import measure_probe_set
from sinklab.analysis.quant_eval import ProbeQuantConfig
from sinklab.analysis.streaming import ProbeStreamConfig, stream_eval
from sinklab.data.probe_set import load_probe_set
from sinklab.data.run_data import load_quant_ids, load_stream_ids
from sinklab.runs.checkpoints import list_checkpoints, load_checkpoint_model

FULL_GRID = ProbeStreamConfig(
    conditions=("dense", "window", "sinks", "recompute"),
    sink_counts=(1, 2, 4, 8),
    shift_modes=("shift", "noshift"),
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a run folder with checkpoints, probe set and stream")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    p.add_argument("--repeats", type=int, default=5, help="timed repeats (default 5)")
    p.add_argument("--window", type=int, default=128, help="the run's data.seq_len (default 128)")
    a = p.parse_args()
    if a.threads < 1 or a.repeats < 1:
        print("error: --threads and --repeats must be >= 1", file=sys.stderr)
        return 2
    torch.set_num_threads(a.threads)
    ckpts = [c for c in list_checkpoints(a.run_dir) if c.step >= 0]
    if not ckpts:
        print(f"error: {a.run_dir}: no step checkpoints", file=sys.stderr)
        return 2
    model, info = load_checkpoint_model(ckpts[-1].path)
    model.eval()
    probe_set = load_probe_set(a.run_dir)
    stream = load_stream_ids(a.run_dir)
    default = ProbeStreamConfig().resolved(a.window)
    full = FULL_GRID.resolved(a.window)
    tasks: dict[str, Callable[[], object]] = {
        "probe pass": lambda: measure_probe_set(model, probe_set, MetricsConfig(), batch_size=100),
        "streaming (default)": lambda: stream_eval(model, stream, default),
        "streaming (full grid)": lambda: stream_eval(model, stream, full),
    }
    try:
        q = load_quant_ids(a.run_dir)
        qcfg = ProbeQuantConfig(enabled=True)
        tasks["W8A8 (3 modes)"] = lambda: qcfg.evaluate(model, q.eval_ids, q.calib, q.bos_id)
    except FileNotFoundError:
        pass
    for task in tasks.values():  # warm-up
        task()
    times: dict[str, list[float]] = {name: [] for name in tasks}
    for _ in range(a.repeats):
        for name, task in tasks.items():
            start = time.perf_counter()
            task()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    probe = medians["probe pass"]
    print(f"{a.run_dir} step {info.step}, {a.threads} thread(s), median of {a.repeats}")
    for name, seconds in medians.items():
        print(f"  {name:22s} {seconds:7.3f} s  {seconds / probe:5.2f} probe passes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
