"""`sinklab-analyze target=hf:<folder>` on a tiny Llama saved locally, with its own tokenizer:
the pretrained path end to end, offline."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from sinklab.reanalysis import from_mapping
from sinklab.reanalysis.corpus_probe import build_probe_set, corpus_documents
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


def _hf_attention(folder: Path, ids: torch.Tensor) -> torch.Tensor:
    """Attention weights from transformers' own eager Llama, the independent reference:
    [N, L, H, T, T]."""
    model = LlamaForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(ids, output_attentions=True)
    return torch.stack(out.attentions, dim=1).double()


def test_hf_folder_target_measures_on_its_own_tokenizer(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-llama"
    _tiny_llama_folder(folder)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    # The windows the analysis measures (4 x 16 tokens, no BOS), and transformers' attention
    # on them: alpha_0 = mean_t A[t, 0] per (window, layer, head), since key 0 is seen by all.
    probe = build_probe_set(
        AutoTokenizer.from_pretrained(folder), corpus_documents(str(corpus)), 4, 16, "none"
    )
    attn = _hf_attention(folder, probe.input_ids)
    alpha0 = attn[..., 0].mean(-1)  # [N, L, H]
    # eps halfway between two neighbouring alpha_0 values, so float noise cannot flip a head
    # and Sink_1 is neither 0 nor 100
    ordered = alpha0.flatten().sort().values
    gaps = ordered[1:] - ordered[:-1]
    cut = max(range(len(ordered) // 4, 3 * len(ordered) // 4), key=lambda j: float(gaps[j]))
    assert gaps[cut] > 1e-4  # the widest gap in the middle half
    eps = float(ordered[cut] + ordered[cut + 1]) / 2
    hits = (alpha0 > eps).double()  # [N, L, H]

    out = tmp_path / "out"
    cfg = from_mapping(
        {
            "target": f"hf:{folder}",
            "corpus": str(corpus),
            "n_windows": 4,
            "seq_len": 16,
            "out_dir": str(out),
            "progress": False,
            "metrics": {"eps": eps},
        }
    )
    analyze(cfg)
    tables = list(out.rglob("*.parquet"))
    assert tables, "the pretrained table was written"
    rows = pd.read_parquet(tables[0])

    def table(metric: str) -> pd.DataFrame:
        return rows[rows["metric"] == metric]

    sink1 = table("sink/sink1_pct")
    whole = sink1[(sink1["layer"] == -1) & (sink1["head"] == -1)]["value"]
    assert len(whole) == 1
    assert float(whole.iloc[0]) == pytest.approx(100.0 * hits.mean().item())
    assert 0.0 < float(whole.iloc[0]) < 100.0
    per_head = sink1[(sink1["layer"] >= 0) & (sink1["head"] >= 0)]
    got = torch.zeros(2, 4, dtype=torch.float64)
    for layer, head, value in per_head[["layer", "head", "value"]].itertuples(index=False):
        got[int(layer), int(head)] = value
    assert len(per_head) == 8
    torch.testing.assert_close(got, 100.0 * hits.mean(0))
    mass = table("sink/first_token_mass")
    mass = mass[(mass["layer"] >= 0) & (mass["head"] >= 0)]
    want_mass = attn[..., 1:, 0].mean(-1).mean(0)  # mean_{t>=1} A[t, 0], then over windows
    got_mass = torch.zeros(2, 4, dtype=torch.float64)
    for layer, head, value in mass[["layer", "head", "value"]].itertuples(index=False):
        got_mass[int(layer), int(head)] = value
    torch.testing.assert_close(got_mass, want_mass, atol=1e-5, rtol=1e-4)
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
