"""Every parameter receives a gradient, the extra slots included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sinklab.model import build_model
from sinklab.model.config import ATTENTIONS

from .helpers import tiny


def _assert_all_params_learn(model) -> None:
    ids = torch.randint(0, model.cfg.vocab_size, (2, 8))
    logits = model(ids)
    F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert p.grad.abs().sum() > 0, f"{name} got a zero gradient"


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_gradients_reach_every_parameter(attention: str) -> None:
    cfg = tiny(
        attention=attention, pos="learned", n_sink_tokens=2, kv_bias=True, qk_norm=True, bias=True
    )
    model = build_model(cfg)
    names = dict(model.named_parameters())
    assert (
        "sink_tokens" in names
        and "blocks.0.attn.k_bias" in names
        and "blocks.0.attn.v_bias" in names
    )
    if attention == "sink_logit":
        assert names["blocks.0.attn.sink_logit"].shape == (cfg.n_heads,)
    if attention == "gated":
        assert "blocks.1.attn.gate.weight" in names
    _assert_all_params_learn(model)


@pytest.mark.parametrize(
    "overrides",
    [
        dict(attention="gated", gate="per_channel", tie_embeddings=False),
        dict(norm="layernorm", norm_position="post", mlp="gelu", bias=True),
        dict(mlp="geglu", pos="alibi"),
        dict(mlp="relu", pos="sinusoidal"),
        dict(mlp="none", pos="none"),
    ],
)
def test_gradients_other_architectures(overrides: dict) -> None:
    _assert_all_params_learn(build_model(tiny(**overrides)))


def test_dropout_is_active_only_in_training() -> None:
    model = build_model(tiny(dropout=0.5))
    ids = torch.randint(0, 32, (2, 8))
    assert not torch.equal(model(ids), model(ids))
    model.eval()
    assert torch.equal(model(ids), model(ids))
