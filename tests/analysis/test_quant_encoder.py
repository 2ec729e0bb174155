"""The W8A8 evaluation scores next-token perplexity, which an encoder sees the answer to: it is
refused for encoders with one line naming the key, before training starts (naming
`callbacks.probe.quant.enabled`) and before sinklab-analyze measures anything (`quant.enabled`),
for encoder runs and pretrained encoders alike."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sinklab.errors import ConfigError
from sinklab.model.config import ModelConfig
from sinklab.model.transformer import Transformer
from sinklab.reanalysis import from_mapping
from sinklab.reanalysis.runner import analyze
from tests.reanalysis.helpers import train_tiny
from tests.reliability.helpers import run_in_process, tiny

ENCODER = ["model.causal=false", "data.objective=mlm"]
REFUSAL = "the W8A8 evaluation scores next-token perplexity: causal models only"


def test_training_an_encoder_with_quant_on_is_refused_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    overrides = [*tiny(tmp_path), *ENCODER, "callbacks.probe.quant.enabled=true"]
    code, line = run_in_process(overrides, run_dir, capsys)
    assert code == 2
    assert line == (
        f"error: callbacks.probe.quant.enabled: {REFUSAL}; set it false for model.causal=false"
    )
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "metrics").exists()
    # the same encoder with quant off (the default) is accepted: the check can pass
    from sinklab.training.run import validate_config
    from tests.training.conftest import compose_train

    assert validate_config(compose_train([*tiny(tmp_path), *ENCODER])).probe.quant.enabled is False


def test_analyze_refuses_quant_on_an_encoder_run_with_one_line(tmp_path: Path) -> None:
    run_dir = train_tiny(tmp_path / "enc", ENCODER, steps=1)
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    done = subprocess.run(
        [sys.executable, "-m", "sinklab.analyze", f"target={run_dir}", "quant.enabled=true"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.splitlines() == [
        f"error: quant.enabled: {REFUSAL}; enc is an encoder (model.causal=false)"
    ]
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before  # nothing written
    # without quant the same run is measured: the refusal is about quant alone
    (report,) = analyze(from_mapping({"target": str(run_dir), "progress": False}))
    assert report.measured


def test_analyze_refuses_quant_on_a_pretrained_encoder(tmp_path: Path, monkeypatch) -> None:
    from sinklab.reanalysis import corpus_probe

    class Tok:  # a character tokenizer: all the corpus code asks of one
        bos_token_id = None

        def __call__(self, docs: list[str], add_special_tokens: bool = False) -> dict:
            return {"input_ids": [[ord(c) % 32 for c in d] for d in docs]}

        def decode(self, ids: list[int]) -> str:
            return "".join(chr(65 + i) for i in ids)

    def encoder(*_args: object) -> tuple[torch.nn.Module, Tok]:
        cfg = ModelConfig(vocab_size=32, d_model=16, n_layers=1, n_heads=2, causal=False)
        return Transformer(cfg).eval(), Tok()

    monkeypatch.setattr(corpus_probe, "load_pretrained", encoder)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog " * 20)
    out = tmp_path / "out"
    cfg = {"target": "smollm2", "corpus": str(corpus), "n_windows": 2, "seq_len": 8}
    cfg |= {"out_dir": str(out), "progress": False, "quant": {"enabled": True}}
    with pytest.raises(ConfigError) as err:
        analyze(from_mapping(cfg))
    assert err.value.key == "quant.enabled" and "\n" not in str(err.value)
    assert str(err.value).startswith(f"quant.enabled: {REFUSAL}; this model is an encoder")
    assert not out.exists()
