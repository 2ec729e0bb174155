"""`sinklab-analyze target=hf:<folder>` on a tiny Llama saved locally, with its own tokenizer:
the pretrained path end to end, offline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from sinklab.reanalysis import from_mapping
from sinklab.reanalysis.runner import analyze

TEXT = "the quick brown fox jumps over the lazy dog and the cat sat on the mat again " * 40


def _tiny_llama_folder(folder: Path) -> None:
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.train_from_iterator(
        [TEXT], trainers.BpeTrainer(vocab_size=80, special_tokens=["<unk>", "<s>"])
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<s>")
    cfg = LlamaConfig(
        vocab_size=raw.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        bos_token_id=1,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def test_hf_folder_target_measures_on_its_own_tokenizer(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-llama"
    _tiny_llama_folder(folder)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "out"
    cfg = from_mapping(
        {
            "target": f"hf:{folder}",
            "corpus": str(corpus),
            "n_windows": 4,
            "seq_len": 16,
            "out_dir": str(out),
            "progress": False,
        }
    )
    analyze(cfg)
    tables = list(out.rglob("*.parquet"))
    assert tables, "the pretrained table was written"
    rows = pd.read_parquet(tables[0])
    sink1 = rows[
        (rows["metric"] == "sink/sink1_pct") & (rows["layer"] == -1) & (rows["head"] == -1)
    ]
    assert len(sink1) == 1 and 0.0 <= float(sink1["value"].iloc[0]) <= 100.0
    assert set(rows["layer"][rows["layer"] >= 0]) == {0, 1}


def test_pretrained_report_loads_the_model_once(tmp_path: Path, monkeypatch) -> None:
    """Table, profiles and attention maps all come from one load and one capture."""
    from sinklab.reanalysis import corpus_probe
    from sinklab.reports.pretrained import run_report

    folder = tmp_path / "tiny-llama"
    _tiny_llama_folder(folder)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    loads = []
    real_load = corpus_probe.load_pretrained
    monkeypatch.setattr(
        corpus_probe, "load_pretrained", lambda *a, **k: loads.append(a) or real_load(*a, **k)
    )
    _, written = run_report(
        target=f"hf:{folder}",
        out_dir=tmp_path / "out",
        fig_dir=tmp_path / "fig",
        corpus=str(corpus),
        n_windows=4,
        seq_len=16,
        map_layers=(0, 1, 5),
    )
    assert len(loads) == 1
    assert {p.name for p in written} == {
        "tiny-llama_massive_profile.png",
        "tiny-llama_sink1_by_layer.png",
        "tiny-llama_attention_maps.png",
    }
