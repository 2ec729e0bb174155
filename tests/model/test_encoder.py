"""Issue #17: the bidirectional option of the model (masks, ALiBi, the refusals)."""

from __future__ import annotations

import pytest
import torch

from sinklab.errors import ConfigError
from sinklab.model.config import ModelConfig
from sinklab.model.position import alibi_slopes, causal_bias
from sinklab.model.streaming import StreamPlan
from sinklab.model.transformer import Transformer


def test_encoder_bias_masks_nothing_and_alibi_is_symmetric() -> None:
    slopes = torch.tensor([0.5])
    bias = causal_bias(3, slopes, causal=False)[0]
    expected = -0.5 * torch.tensor([[0.0, 1, 2], [1, 0, 1], [2, 1, 0]])
    torch.testing.assert_close(bias, expected)
    causal = causal_bias(3, slopes)[0]
    assert torch.isinf(causal[0, 1]) and causal[2, 0] == -1.0


@pytest.mark.parametrize(
    "extra",
    [{"pos": "alibi"}, {"kv_bias": True}, {"attention": "sink_logit"}, {"n_sink_tokens": 2}],
)
def test_encoder_fused_and_probe_paths_agree(extra: dict) -> None:
    """Slots, ALiBi and sink tokens take the masked SDPA call; it must match the explicit path."""
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=40, d_model=32, n_layers=2, n_heads=4, causal=False, **extra)
    model = Transformer(cfg).eval()
    ids = torch.randint(0, 40, (2, 10))
    with torch.no_grad():
        torch.testing.assert_close(model(ids), model.forward_probe(ids).logits, atol=1e-5, rtol=0)
        pattern = model.forward_probe(ids)["blocks.0.attn.pattern"]
    # every column, later keys and the extra slots alike, gets weight from every query (a
    # causal map has exact zeros above the diagonal)
    assert pattern.shape[-1] == len(model.extra_slots) + 10
    assert float(pattern.min()) > 0


def test_alibi_encoder_scores_follow_symmetric_distance() -> None:
    """With zero q/k weights, scores are the bias alone: softmax of -slope |t - k|."""
    cfg = ModelConfig(vocab_size=20, d_model=16, n_layers=1, n_heads=2, pos="alibi", causal=False)
    model = Transformer(cfg)
    with torch.no_grad():
        model.blocks[0].attn.wq.weight.zero_()
        pattern = model.forward_probe(torch.arange(5)[None])["blocks.0.attn.pattern"][0]
    dist = (torch.arange(5)[:, None] - torch.arange(5)[None]).abs().float()
    for h, slope in enumerate(alibi_slopes(2)):
        torch.testing.assert_close(pattern[h], torch.softmax(-slope * dist, -1))


def test_encoders_are_refused_by_hf_export_and_streaming() -> None:
    from sinklab.model.hf import to_hf_llama

    model = Transformer(ModelConfig(vocab_size=20, d_model=16, n_layers=1, n_heads=2, causal=False))
    with pytest.raises(ConfigError, match=r"^model\.causal: an encoder \(causal=false\) has no"):
        to_hf_llama(model)
    ids = torch.randint(0, 20, (1, 12))
    with pytest.raises(ConfigError, match=r"^model\.causal: the streaming evaluation"):
        model.forward_stream(ids, StreamPlan(length=12, cache_len=4))
    with pytest.raises(ConfigError, match="causal models only"):
        model.forward_stream(ids)
