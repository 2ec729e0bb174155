"""Issue #17: the encoder/objective combinations that cannot work exit 2 with one error line
naming the key, before any run folder exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.reliability.helpers import run_in_process, tiny

ENCODER = ["model.causal=false", "data.objective=mlm"]


@pytest.mark.parametrize(
    "overrides,expected",
    [
        (
            [*ENCODER, "data.min_context=4"],
            "error: data.min_context: min_context/max_context (a loss window over next-token "
            "positions) is not defined for objective=mlm",
        ),
        (
            [*ENCODER, "data.max_context=16"],
            "error: data.min_context: min_context/max_context",
        ),
        (["data.objective=mlm"], "error: data.objective: mlm needs a bidirectional model"),
        (["model.causal=false"], "error: model.causal: false (bidirectional) sees the token"),
        (
            [*ENCODER, "callbacks.probe.stream.enabled=true"],
            "error: callbacks.probe.stream.enabled: the streaming evaluation (bounded KV cache) "
            "is causal-only",
        ),
        (["data.objective=bert"], "error: data.objective: 'bert' is not allowed; choose one of"),
        (
            ["data.end_token=true"],
            "error: data.end_token: needs objective=mlm: in a causal decoder no query attends "
            "to the last position",
        ),
        ([*ENCODER, "data.mlm_probability=0"], "error: data.mlm_probability: must be > 0"),
        (
            [*ENCODER, "data.mlm_mask_frac=0.95"],
            "error: data.mlm_random_frac: mlm_mask_frac + mlm_random_frac must be <= 1",
        ),
    ],
)
def test_bad_encoder_config_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], overrides: list[str], expected: str
) -> None:
    run_dir = tmp_path / "run"
    code, line = run_in_process(tiny(tmp_path) + overrides, run_dir, capsys)
    assert code == 2
    assert line.startswith(expected), line
    assert not run_dir.exists()


def test_a_tokenizer_file_without_a_mask_token_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from sinklab.data.tokenizer import train_bpe

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(f"line {i}: the quick brown fox." for i in range(40)))
    path = tmp_path / "tokenizer.json"
    path.write_text(train_bpe([corpus.read_text()], 300).to_str())  # <bos> <eos> <pad> only
    overrides = [
        *ENCODER,
        "data=text_files",
        f"data.text_files.paths=[{corpus}]",
        "data.text_files.sample_by=paragraph",
        "data.tokenizer.kind=file",
        f"data.tokenizer.path={path}",
        "data.bos=none",
    ]
    code, line = run_in_process(tiny(tmp_path) + overrides, tmp_path / "run", capsys)
    assert code == 2
    assert line.startswith("error: data.tokenizer.path: "), line
    assert "has no mask token (looked for <mask>, [MASK]); objective=mlm needs one" in line
