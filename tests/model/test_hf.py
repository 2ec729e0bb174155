"""Exact interop with Hugging Face Llama on random tiny models."""

from __future__ import annotations

import pytest
import torch

from sinklab.errors import ConfigError
from sinklab.model import build_model
from sinklab.model.hf import from_hf_llama, to_hf_llama

from .helpers import tiny

transformers = pytest.importorskip("transformers")


def _hf_llama(n_kv_heads: int, tied: bool, theta: float = 500.0):
    cfg = transformers.LlamaConfig(
        vocab_size=40,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=n_kv_heads,
        max_position_embeddings=32,
        tie_word_embeddings=tied,
        rope_theta=theta,
        initializer_range=0.2,
        rope_parameters={"rope_type": "default", "rope_theta": theta},
    )
    model = transformers.LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norm gains are ones at init; make them matter
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("n_kv_heads,tied", [(4, True), (4, False), (2, True), (1, False)])
def test_from_hf_llama_gives_the_same_logits(n_kv_heads: int, tied: bool) -> None:
    hf = _hf_llama(n_kv_heads, tied)
    ours = from_hf_llama(hf).eval()
    assert ours.cfg.n_kv_heads == n_kv_heads and ours.cfg.tie_embeddings == tied
    assert ours.cfg.rope_theta == 500.0
    ids = torch.randint(0, 40, (2, 20))
    with torch.no_grad():
        expected = hf(ids).logits
        got = ours(ids)
        probed = ours.forward_probe(ids).logits
    assert expected.std() > 0.5  # logits large enough for the comparison to mean something
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)
    torch.testing.assert_close(probed, expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("n_kv_heads,tied", [(2, True), (4, False)])
def test_round_trip_is_exact(n_kv_heads: int, tied: bool) -> None:
    hf = _hf_llama(n_kv_heads, tied)
    back = to_hf_llama(from_hf_llama(hf))
    a, b = hf.state_dict(), back.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert back.config.tie_word_embeddings == tied

    ours = build_model(tiny(tie_embeddings=tied, n_kv_heads=n_kv_heads, bias=True))
    again = from_hf_llama(to_hf_llama(ours))
    assert again.cfg == ours.cfg
    a, b = ours.state_dict(), again.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "overrides,key",
    [
        (dict(pos="alibi"), "model.pos"),
        (dict(norm="layernorm"), "model.norm"),
        (dict(norm_position="post"), "model.norm_position"),
        (dict(qk_norm=True), "model.qk_norm"),
        (dict(mlp="gelu"), "model.mlp"),
        (dict(attention="sink_logit"), "model.attention"),
        (dict(n_sink_tokens=1), "model.n_sink_tokens"),
        (dict(kv_bias=True), "model.kv_bias"),
        (dict(rotary_pct=0.5), "model.rotary_pct"),
        (dict(rope_scaling={"type": "linear", "factor": 2.0}), "model.rope_scaling"),
    ],
)
def test_to_hf_llama_refuses_what_llama_cannot_express(overrides: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        to_hf_llama(build_model(tiny(**overrides)))
    assert err.value.key == key


def test_from_hf_llama_refuses_scaled_rope() -> None:
    hf = _hf_llama(4, True)
    hf.config.rope_parameters = {"rope_type": "linear", "rope_theta": 500.0, "factor": 2.0}
    with pytest.raises(ConfigError, match="rope"):
        from_hf_llama(hf)
