"""The probe callback, run reanalysis and pretrained reanalysis go through one function,
`analysis.probe_pass.run_probe_pass`: a spy put in its place sees every step of all three,
and the rows the reanalysis writes are the callback's. And a run saved with the flat
`callbacks.probe.quant` layout of before the nested sections re-measures identically."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from sinklab.analysis import probe_pass
from sinklab.analysis.records import read_rows
from sinklab.reanalysis import from_mapping, runner
from sinklab.training.callbacks import probes
from tests.reanalysis.helpers import train_tiny
from tests.reanalysis.test_hf_target import TEXT, _tiny_llama_folder
from tests.training.test_quant_callback import QUANT

_SORT = ["step", "metric", "layer", "head"]


def _rows(path: Path) -> pd.DataFrame:
    return read_rows(path).sort_values(_SORT, kind="stable").reset_index(drop=True)


def test_three_callers_one_probe_pass(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert probes.run_probe_pass is probe_pass.run_probe_pass
    assert runner.run_probe_pass is probe_pass.run_probe_pass
    calls: list[tuple[str, int, tuple[str, ...]]] = []

    def spy(who: str):  # noqa: ANN202
        def run(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            result = probe_pass.run_probe_pass(*args, **kwargs)
            calls.append((who, kwargs["step"], tuple(sorted(result.seconds))))
            return result

        return run

    monkeypatch.setattr(probes, "run_probe_pass", spy("callback"))
    monkeypatch.setattr(runner, "run_probe_pass", spy("reanalysis"))
    run_dir = train_tiny(tmp_path / "run", QUANT)
    (report,) = runner.analyze(from_mapping({"target": str(run_dir), "progress": False}))
    folder = tmp_path / "tiny-llama"
    _tiny_llama_folder(folder)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    pretrained = {"target": f"hf:{folder}", "corpus": str(corpus), "n_windows": 2}
    pretrained |= {"seq_len": 16, "out_dir": str(tmp_path / "pre"), "progress": False}
    runner.analyze(from_mapping(pretrained))

    # the quant evaluation at its own steps (0, 2 and the last), the interventions at theirs
    # (0 and the last: from_step 256), in every caller alike
    per_step = {0: ("intervention", "quant"), 1: (), 2: ("quant",), 4: ("intervention", "quant")}
    assert calls == [
        *[("callback", s, q) for s, q in per_step.items()],
        *[("reanalysis", s, q) for s, q in per_step.items()],
        ("reanalysis", -1, ("stream",)),  # pretrained: stream on, quant off by default
    ]
    logged, again = _rows(run_dir / "metrics" / "probes.parquet"), _rows(report.table)
    pd.testing.assert_frame_equal(again, logged, check_exact=True)


def test_a_run_saved_with_the_flat_quant_layout_re_measures_identically(tmp_path: Path) -> None:
    run_dir = train_tiny(tmp_path / "run", QUANT)
    saved = run_dir / ".hydra" / "config.yaml"
    cfg = OmegaConf.load(saved)
    quant = OmegaConf.to_container(cfg.callbacks.probe.quant)
    flat = {k: v for k, v in quant.items() if k not in ("quantizer", "prefix")}
    flat |= quant["quantizer"] | quant["prefix"]  # the layout before the sections
    assert flat["calibration_batches"] == 2 and "quantizer" not in flat
    cfg.callbacks.probe.quant = flat
    OmegaConf.save(cfg, saved)

    (report,) = runner.analyze(from_mapping({"target": str(run_dir), "progress": False}))
    logged, again = _rows(run_dir / "metrics" / "probes.parquet"), _rows(report.table)
    assert sorted(again.loc[again["metric"].str.startswith("quant/"), "step"].unique()) == [0, 2, 4]
    pd.testing.assert_frame_equal(again, logged, check_exact=True)
