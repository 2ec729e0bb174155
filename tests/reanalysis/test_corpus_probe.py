"""Probe sets for pretrained models: evenly spaced windows of the corpus, BOS only if asked."""

from __future__ import annotations

import pytest

from sinklab.errors import ConfigError
from sinklab.reanalysis.corpus_probe import build_probe_set


class WordTokenizer:
    """The slice of the transformers tokenizer API the probe builder uses."""

    bos_token_id = 0

    def __init__(self) -> None:
        self.vocab: dict[str, int] = {"<s>": 0}

    def __call__(self, docs: list[str], add_special_tokens: bool = False) -> dict:
        assert add_special_tokens is False
        return {
            "input_ids": [
                [self.vocab.setdefault(w, len(self.vocab)) for w in d.split()] for d in docs
            ]
        }

    def decode(self, ids: list[int]) -> str:
        inverse = {v: k for k, v in self.vocab.items()}
        return " ".join(inverse[i] for i in ids)


def test_windows_are_evenly_spaced_without_bos() -> None:
    docs = [" ".join(f"w{i}" for i in range(50)), " ".join(f"w{i}" for i in range(50, 100))]
    probe = build_probe_set(WordTokenizer(), docs, n_windows=5, seq_len=8)
    assert tuple(probe.input_ids.shape) == (5, 8) and not probe.has_bos
    assert probe.text[0].split()[0] == "w0" and probe.text[-1].split()[-1] == "w99"


def test_bos_first_and_too_short_corpus() -> None:
    tok = WordTokenizer()
    probe = build_probe_set(tok, ["a b c d e f g h i j"], n_windows=3, seq_len=4, bos="bos")
    assert probe.has_bos and (probe.input_ids[:, 0] == 0).all()
    with pytest.raises(ConfigError, match="^seq_len"):
        build_probe_set(tok, ["a b"], n_windows=1, seq_len=64)
