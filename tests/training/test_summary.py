"""summary.json tells the truth: it is written however the run ends (finished, stopped on a
non-finite value, interrupted), holds the reason, the last good step and checkpoint and the
skipped-batch count, shows the variant's own headline figure, and its probe and W8A8 times
are the ones the log gives."""

from __future__ import annotations

import json
import logging
import re
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from sinklab.runs.checkpoints import load_checkpoint_model, load_checkpoint_state
from sinklab.training.module import NonFiniteLossError, SinkLabModule
from sinklab.training.run import RunInterrupted, RunResult, train, validate_config
from tests.reliability import faults
from tests.reliability.helpers import tiny
from tests.training.conftest import compose_train


def _train(tmp: Path, steps: int, extra: list[str] = ()) -> RunResult:
    run_dir = tmp / "run"
    run_dir.mkdir(exist_ok=True)
    return train(validate_config(compose_train(tiny(tmp, steps) + list(extra))), run_dir)


def _summary(tmp: Path) -> dict:
    return json.loads((tmp / "run" / "summary.json").read_text())


def test_a_run_stopped_on_a_nonfinite_loss_writes_its_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults.nan_loss_at(3, monkeypatch.setattr)
    with pytest.raises(NonFiniteLossError):
        _train(tmp_path, 6)
    summary = _summary(tmp_path)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert summary["status"] == "stopped_nonfinite" and summary["exit_code"] == 3
    assert summary["reason"] == (
        "non-finite training loss (nan) at step 3; lower optim.lr, raise optim.warmup_steps, "
        f"or set trainer.on_nonfinite=skip; resume with ckpt_path={last}"
    )
    assert summary["steps_completed"] == 3 and summary["last_good_step"] == 3
    assert summary["last_checkpoint"] == str(last)
    assert summary["last_checkpoint_step"] == load_checkpoint_state(last)["global_step"] == 0
    assert summary["skipped_batches"] == 0


def test_an_interrupted_run_writes_its_summary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C at step 2 (a KeyboardInterrupt inside fit, as SIGINT raises it)."""
    original = SinkLabModule.on_train_batch_end

    def interrupt_at_2(self, *args):  # noqa: ANN001, ANN002, ANN202
        original(self, *args)
        if self.global_step == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(SinkLabModule, "on_train_batch_end", interrupt_at_2)
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(RunInterrupted):
            _train(tmp_path, 6)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT after one
    summary = _summary(tmp_path)
    assert summary["status"] == "interrupted" and summary["exit_code"] == 130
    assert summary["steps_completed"] == 2 and summary["last_good_step"] == 2
    assert summary["reason"].startswith("interrupted at step 2; resume with ckpt_path=")
    assert summary["fit_seconds"] > 0


def test_skips_under_the_share_finish_and_are_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults.nan_loss_at(2, monkeypatch.setattr)
    result = _train(tmp_path, 12, ["trainer.on_nonfinite=skip"])
    summary = _summary(tmp_path)
    assert result.exit_code == 0 and summary["status"] == "finished"
    assert summary["skipped_batches"] == 1 and summary["skipped_share"] == round(1 / 12, 4)
    assert summary["last_good_step"] == 12


def test_skips_over_the_share_end_the_run_as_skipped_too_many(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    faults.nan_grad_at(2, monkeypatch.setattr)
    faults.nan_grad_at(5, monkeypatch.setattr)
    result = _train(tmp_path, 6, ["trainer.on_nonfinite=skip", "trainer.max_skipped_share=0.25"])
    summary = _summary(tmp_path)
    assert result.exit_code == 5 and summary["status"] == "skipped_too_many"
    assert summary["skipped_batches"] == 2
    assert summary["last_good_step"] == 5  # the update of step 6 was the second one skipped
    assert summary["reason"].startswith(
        "skipped 2 of 6 batches (33.3 %), above trainer.max_skipped_share=0.25"
    )


def _model_row(table: Path, metric: str, step: int) -> float:
    df = pd.read_parquet(table)
    model_rows = (df["layer"] == -1) & (df["head"] == -1)
    row = df[model_rows & (df["metric"] == metric) & (df["step"] == step)]
    return float(row["value"].iloc[0])


@pytest.mark.parametrize("variant,slot", [("sink_token", "sink_token_0"), ("kv_bias", "kv_bias")])
def test_the_summary_shows_the_slot_mass_of_a_slot_variant(
    tmp_path: Path, variant: str, slot: str
) -> None:
    _train(tmp_path, 4, [f"variant={variant}"])
    headline = _summary(tmp_path)["headline"]
    table = tmp_path / "run" / "metrics" / "probes.parquet"
    fig = headline[f"slot_mass/{slot}"]
    assert (fig["first_step"], fig["last_step"]) == (0, 4)
    assert fig["first"] == _model_row(table, f"slot_mass/{slot}", 0)
    assert fig["last"] == _model_row(table, f"slot_mass/{slot}", 4)
    assert 0 < fig["last"] < 1
    assert headline["sink/sink1_pct"]["last"] == _model_row(table, "sink/sink1_pct", 4)


def test_the_summary_shows_the_gate_of_gated_attention(tmp_path: Path) -> None:
    """The mean sigmoid gate of the final model on the probe windows, recomputed here from
    each attention layer's input and its gate weights."""
    from sinklab.data import load_probe_set

    _train(tmp_path, 4, ["variant=gated_head"])
    fig = _summary(tmp_path)["headline"]["gate/mean"]
    run_dir = tmp_path / "run"
    model, _ = load_checkpoint_model(next((run_dir / "checkpoints").glob("step0000004-*.ckpt")))
    ids = load_probe_set(run_dir).input_ids[:4]  # callbacks.probe.batch_size in debug=tiny
    inputs: list[torch.Tensor] = []
    attns = [m for m in model.modules() if hasattr(m, "gate_per_head")]
    hooks = [a.register_forward_pre_hook(lambda _m, args: inputs.append(args[0])) for a in attns]
    with torch.no_grad():
        model.eval()
        model(ids)
        gates = [
            torch.sigmoid(F.linear(x, a.gate.weight, a.gate.bias)).mean()
            for a, x in zip(attns, inputs, strict=True)
        ]
    for h in hooks:
        h.remove()
    assert len(gates) == 2
    assert fig["last_step"] == 4
    assert fig["last"] == pytest.approx(float(torch.stack(gates).mean()), rel=1e-5)


def test_probe_and_w8a8_times_agree_with_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The log's `probes N s, of which ... quant Q s` counted W8A8 in, the summary's
    probe_seconds left it out; the summary now gives the log's total too."""
    with caplog.at_level(logging.INFO, logger="sinklab.training.callbacks.probes"):
        _train(tmp_path, 4)
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("probes "))
    total = float(re.match(r"probes ([\d.]+) s", line)[1])
    quant = float(re.search(r"quant ([\d.]+) s", line)[1])
    summary = _summary(tmp_path)
    assert summary["probe_total_seconds"] == total
    assert summary["quant_seconds"] == quant
    assert summary["probe_total_seconds"] == pytest.approx(
        summary["probe_seconds"] + summary["quant_seconds"] + summary["intervention_seconds"],
        abs=0.015,
    )


def test_heavy_probes_are_said_with_how_to_thin_them(tmp_path: Path) -> None:
    """A 4-step tiny run is mostly probes: the summary says so, with the keys that thin them."""
    result = _train(tmp_path, 4)
    hint = _summary(tmp_path)["probe_hint"]
    share = result.probe_total_seconds / result.fit_seconds  # unrounded, as the hint has it
    assert share > 0.1
    assert hint.startswith(f"probes took {100 * share:.0f} % of this run; ")
    assert "callbacks.probe.enabled=false" in hint
