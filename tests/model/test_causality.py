"""Changing future tokens never changes earlier logits, for every pos x attention variant."""

from __future__ import annotations

import pytest
import torch

from sinklab.model import build_model

from .helpers import ALL_VARIANTS, tiny

T, CUT = 10, 6


def _check_causal(model) -> None:
    ids = torch.randint(0, model.cfg.vocab_size, (2, T))
    changed = ids.clone()
    changed[:, CUT:] = (ids[:, CUT:] + 1) % model.cfg.vocab_size
    with torch.no_grad():
        for run in (lambda x: model(x), lambda x: model.forward_probe(x).logits):
            a, b = run(ids), run(changed)
            torch.testing.assert_close(a[:, :CUT], b[:, :CUT], rtol=0, atol=1e-6)
            # the change is visible from the changed position on, so the check above can fail
            assert (a[:, CUT:] - b[:, CUT:]).abs().max() > 1e-4


@pytest.mark.parametrize("pos,attention", ALL_VARIANTS)
def test_causal_for_every_variant(pos: str, attention: str) -> None:
    _check_causal(build_model(tiny(pos=pos, attention=attention)).eval())


@pytest.mark.parametrize("pos,attention", ALL_VARIANTS)
def test_causal_with_sink_tokens_and_kv_bias(pos: str, attention: str) -> None:
    cfg = tiny(pos=pos, attention=attention, n_sink_tokens=2, kv_bias=True)
    _check_causal(build_model(cfg).eval())


@pytest.mark.parametrize(
    "extra",
    [
        dict(n_sink_tokens=3),
        dict(kv_bias=True),
        dict(norm_position="post", norm="layernorm", mlp="none"),
    ],
)
def test_causal_with_one_extra(extra: dict) -> None:
    _check_causal(build_model(tiny(pos="alibi", **extra)).eval())
