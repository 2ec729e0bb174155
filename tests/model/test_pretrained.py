"""SmolLM2-135M-Instruct from its GGUF file: the sinklab model matches transformers."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2():
    from sinklab.model.pretrained import fetch_smollm2, load_hf_gguf

    path = fetch_smollm2()  # $SINKLAB_CACHE or ~/.cache/sinklab; downloads ~93 MB once
    return load_hf_gguf(path)


def test_smollm2_matches_transformers_and_knows_paris(smollm2) -> None:
    from sinklab.model.hf import from_hf_llama

    hf, tokenizer = smollm2
    model = from_hf_llama(hf).eval()
    cfg = model.cfg
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size) == (
        30,
        576,
        9,
        3,
        49152,
    )

    sentence = (
        "Attention sinks appear when a model needs somewhere to put attention it does not use."
    )
    ids = tokenizer(sentence, return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits, rtol=0, atol=1e-3)
        probe = model.forward_probe(ids, names=["blocks.29.attn.pattern"])
        torch.testing.assert_close(probe.logits, hf(ids).logits, rtol=0, atol=1e-3)

        prompt = tokenizer("The capital of France is", return_tensors="pt").input_ids
        next_id = model(prompt)[0, -1].argmax().item()
    assert tokenizer.decode([next_id]) == " Paris"
