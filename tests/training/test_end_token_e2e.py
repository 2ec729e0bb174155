"""`sinklab-train variant=encoder data.end_token=true` from the command line: the encoder trains
on windows that end with the end token, its probe windows end with it too, and the probe
table has the reference-frame rows that the frames studies read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from sinklab.data import load_probe_set
from sinklab.runs.layout import RunLayout
from tests.reliability.helpers import run_cli
from tests.training.conftest import tiny_overrides


def test_encoder_with_end_token_trains_from_the_cli_and_measures_frames(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    args = tiny_overrides(tmp_path) + [
        "variant=encoder",
        "data.end_token=true",
        "trainer.threads=1",
        f"hydra.run.dir={run_dir}",
    ]
    proc = run_cli(args, tmp_path, timeout=600)  # the real CLI, offline W&B, one thread
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "sinklab run finished" in proc.stdout

    probe = load_probe_set(run_dir)
    # tiny_overrides: zipf over 64 tokens, BOS 64, mask 65, the end token 66
    assert probe.input_ids.shape == (8, 16)
    assert (probe.input_ids[:, 0] == 64).all() and (probe.input_ids[:, -1] == 66).all()
    assert all(text.endswith("<eos>") for text in probe.text)

    rows = pd.read_parquet(RunLayout(run_dir).probes_table)
    assert rows["step"].max() == 4
    frames = rows[rows["metric"].str.startswith("frames/")]
    assert set(frames["step"]) == set(rows["step"])  # at every probe step
    classes = frames[(frames["metric"] == "frames/class") & (frames["layer"] == -1)]
    assert len(classes) == rows["step"].nunique() and classes["value"].between(0, 3).all()
    # an encoder: no streaming or W8A8 evaluation (causal-only)
    assert not rows["metric"].str.startswith(("stream/", "quant/")).any()
