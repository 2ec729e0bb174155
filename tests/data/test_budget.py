"""The token budget through the trainer: refused in one line before a step is taken, and the
epochs seen recorded in the summary (the in-memory path; storage=shards: test_shards*.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sinklab.data.budget import Budget, check_budget
from sinklab.data.run_data import RunData
from sinklab.errors import ConfigError
from sinklab.training.run import train
from sinklab.training.run_config import validate_config
from tests.training.conftest import compose_train, tiny_overrides


def _text(tmp: Path) -> list[str]:
    corpus = tmp / "corpus.txt"
    corpus.write_text("\n".join(f"line {i} of a small corpus about sinks" for i in range(400)))
    return [
        "data=text_files",
        f"data.text_files.paths=[{corpus}]",
        "data.tokenizer.kind=byte",
        "data.text_files.sample_by=line",
        "callbacks.probe.enabled=false",
    ]


def test_budget_numbers() -> None:
    budget = check_budget(10, 1_000, 4_000, max_epochs=None)
    assert (budget.tokens, budget.epochs) == (10_000, 2.5)
    assert budget.line() == (
        "token budget 10 steps x 1,000 = 10.00k tokens; training split 4.00k tokens: 2.50 epochs"
    )
    assert Budget(10, 1_000, None).epochs is None  # generated data never repeats
    assert check_budget(10, 1_000, None, max_epochs=1.0).epochs is None
    with pytest.raises(ConfigError, match=r"^data.max_epochs: .* 2.50 epochs, above max_epochs=2"):
        check_budget(10, 1_000, 4_000, max_epochs=2)


def test_a_run_over_its_epochs_is_refused_and_one_within_records_them(tmp_path: Path) -> None:
    over = tiny_overrides(tmp_path, steps=4) + _text(tmp_path)
    with pytest.raises(
        ConfigError, match=r"^data.max_epochs: the run reads .* above max_epochs=0.001"
    ):
        train(validate_config(compose_train([*over, "data.max_epochs=0.001"])), tmp_path / "no")
    assert not (tmp_path / "no" / "checkpoints").exists()  # refused before the first step
    run_dir = tmp_path / "yes"
    run_dir.mkdir()
    run = validate_config(compose_train([*over, "data.max_epochs=100"]))
    result = train(run, run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    corpus_tokens = RunData(run.data).batches.train_tokens
    assert summary["epochs_seen"] == round(result.tokens_seen / corpus_tokens, 4) > 0
