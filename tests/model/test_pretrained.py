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


@pytest.fixture(scope="module")
def gemma3():
    from sinklab.model.pretrained import fetch_gemma3, load_hf_gguf

    path = fetch_gemma3()  # $SINKLAB_CACHE or ~/.cache/sinklab; downloads ~240 MB once
    return load_hf_gguf(path)


def test_gemma3_matches_transformers_past_the_sliding_window(gemma3) -> None:
    """The dequantised Gemma 3 270M converted to sinklab equals transformers' own
    Gemma3ForCausalLM: logits within 1e-4 on a sentence, attention probabilities of every
    layer within 1e-5, and logits within 5e-4 on 600 tokens, past the 512-token window of the
    sliding layers (logits of size ~25 summed over longer rows: fp32 rounding, not a bias)."""
    from sinklab.model.convert import from_hf

    hf, tokenizer = gemma3
    model = from_hf(hf).eval()
    cfg = model.cfg
    assert (cfg.n_layers, cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim) == (
        18,
        640,
        4,
        1,
        256,
    )
    assert (cfg.vocab_size, cfg.sliding_window, cfg.norm_position) == (262144, 512, "sandwich")
    assert [i for i, kind in enumerate(cfg.layer_types) if kind == "full"] == [5, 11, 17]

    sentence = (
        "Attention sinks appear when a model needs somewhere to put attention it does not use."
    )
    ids = tokenizer(sentence, return_tensors="pt").input_ids
    assert ids[0, 0].item() == tokenizer.bos_token_id == 2
    names = [f"blocks.{i}.attn.pattern" for i in range(cfg.n_layers)]
    with torch.no_grad():
        out = hf(ids, output_attentions=True)
        torch.testing.assert_close(model(ids), out.logits, rtol=0, atol=1e-4)
        probe = model.forward_probe(ids, names=names)
        torch.testing.assert_close(probe.logits, out.logits, rtol=0, atol=1e-4)
        for i, theirs in enumerate(out.attentions):
            torch.testing.assert_close(probe.cache[names[i]], theirs, rtol=0, atol=1e-5)

        long = torch.randint(
            0, cfg.vocab_size, (1, 600), generator=torch.Generator().manual_seed(0)
        )
        torch.testing.assert_close(model(long), hf(long).logits, rtol=0, atol=5e-4)

        prompt = tokenizer("The capital of France is", return_tensors="pt").input_ids
        top5 = model(prompt)[0, -1].topk(5).indices.tolist()
    assert " Paris" in [tokenizer.decode([i]) for i in top5]
