"""`sinklab-analyze target=hf:<folder> quant.enabled=true`: the W8A8 evaluation of a pretrained
model on windows of a corpus cut with its own tokenizer, checked against transformers' own
Llama (the independent reference for the full-precision perplexities)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from sinklab.data.run_data import load_quant_ids
from sinklab.errors import ConfigError
from sinklab.reanalysis import from_mapping
from sinklab.reanalysis.corpus_probe import build_quant_ids, corpus_documents, token_stream
from sinklab.reanalysis.runner import analyze
from tests.reanalysis.test_hf_target import TEXT, _tiny_llama_folder


def _hf_ppl(folder: Path, ids: torch.Tensor, prefix: list[int]) -> float:
    """exp(mean NLL) of tokens 1.. of every window, the prefix (if any) as context only."""
    model = LlamaForCausalLM.from_pretrained(folder).eval()
    head = torch.tensor(prefix, dtype=torch.long).expand(ids.shape[0], -1)
    with torch.no_grad():
        logits = model(torch.cat([head, ids], dim=1)).logits[:, len(prefix) :]
    logp = logits[:, :-1].double().log_softmax(-1)
    return math.exp(float(-logp.gather(-1, ids[:, 1:, None]).mean()))


def test_pretrained_quant_rows_windows_and_tags(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-llama"
    _tiny_llama_folder(folder)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "out"
    quant = {"enabled": True, "eval_windows": 4, "calibration_batches": 2, "batch_size": 2}
    base = {"target": f"hf:{folder}", "corpus": str(corpus), "n_windows": 4, "seq_len": 16}
    base |= {"out_dir": str(out), "progress": False, "stream": {"enabled": False}}
    (report,) = analyze(from_mapping({**base, "quant": {**quant, "prefixes": ["bos"]}}))
    assert report.measured == [-1]
    rows = pd.read_parquet(report.table)
    q = rows[rows["metric"].str.startswith("quant/")]
    values = dict(zip(q["metric"], q["value"], strict=True))

    # the windows: saved beside the table, the corpus's own tokens, scored and calibration
    # windows disjoint
    ids = load_quant_ids(out)
    assert tuple(ids.eval_ids.shape) == (4, 16) and tuple(ids.calib.shape) == (2, 2, 16)
    tok = AutoTokenizer.from_pretrained(folder)
    stream = token_stream(tok, corpus_documents(str(corpus)))
    text = stream.tobytes()
    windows = torch.cat([ids.eval_ids, ids.calib.reshape(-1, 16)]).numpy()
    assert all(w.astype(np.int64).tobytes() in text for w in windows)
    assert len({w.tobytes() for w in windows}) == 8
    assert int(ids.bos) == tok.bos_token_id == 1

    # FP perplexity and the FP + BOS control against transformers' Llama
    assert values["quant/ppl/fp"] == pytest.approx(_hf_ppl(folder, ids.eval_ids, []), rel=1e-4)
    assert values["quant/prefix/bos/ppl/fp"] == pytest.approx(
        _hf_ppl(folder, ids.eval_ids, [1]), rel=1e-4
    )
    assert values["quant/prefix/bos/len"] == 1 and values["quant/prefix/bos/token_0"] == 1
    for mode in ("per_tensor_static", "per_tensor_dynamic", "per_token_dynamic"):
        got = values[f"quant/ppl/{mode}"]
        assert values[f"quant/ppl_increase/{mode}"] == pytest.approx(got - values["quant/ppl/fp"])
    tags = set(q["checkpoint"])
    assert len(tags) == 1
    (tag,) = tags
    assert "quant 4x16 calib 2x2 W8A8 per_channel" in tag and "prefixes [bos]" in tag
    assert (q["step"] == -1).all()

    # the same settings again: nothing to do; other settings: a new tagged measurement
    (again,) = analyze(from_mapping({**base, "quant": {**quant, "prefixes": ["bos"]}}))
    assert again.skipped == [-1] and len(pd.read_parquet(again.table)) == len(rows)
    one = {**quant, "modes": ["per_token_dynamic"]}
    (other,) = analyze(from_mapping({**base, "quant": one}))
    assert other.measured == [-1]
    rows2 = pd.read_parquet(other.table)
    new = rows2[rows2["checkpoint"].str.contains(r"\[per_token_dynamic\]", regex=True)]
    assert set(new["metric"]) == {
        "quant/bits",
        "quant/ppl/fp",
        "quant/max_act",
        "quant/token_max_over_median",
        "quant/ppl/per_token_dynamic",
        "quant/ppl_increase/per_token_dynamic",
    }
    same = new.set_index("metric")["value"]
    assert same["quant/ppl/per_token_dynamic"] == values["quant/ppl/per_token_dynamic"]


def test_a_corpus_too_short_for_the_windows_names_the_key() -> None:
    class Tok:
        bos_token_id = None

        def __call__(self, docs: list[str], add_special_tokens: bool = False) -> dict:
            return {"input_ids": [list(range(len(d))) for d in docs]}

    with pytest.raises(ConfigError, match=r"^quant\.eval_windows: 4 evaluation \+ 2 x 2"):
        build_quant_ids(Tok(), ["x" * 100], 4, (2, 2), 16)
    ids = build_quant_ids(Tok(), ["x" * 128], 4, (2, 2), 16)  # 8 x 16 tokens: fits exactly
    starts = torch.cat([ids.eval_ids[:, 0], ids.calib.reshape(-1, 16)[:, 0]]).sort().values
    assert starts.tolist() == list(range(0, 128, 16))  # non-overlapping, evenly spread
    assert ids.eval_ids[:, 0].tolist() == [0, 32, 80, 112]  # ranks 0, 2, 5, 7 of 8 are scored
