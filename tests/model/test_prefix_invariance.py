"""A causal model's output at a position depends only on the tokens up to it (issue #18).

For every attention variant and position encoding, the logits of the first P positions are
the same whether the window holds P or 2P tokens, on the fused training path and on the
probe path (explicit attention). A variant that normalises by the window length (the old
ReLU divisor) fails this: the probe would measure another function than the one trained.
"""

from __future__ import annotations

import pytest
import torch

from sinklab.model import build_model
from sinklab.model.config import ATTENTIONS, POSITIONS

from .helpers import tiny

P = 12
ATOL = 1e-5
EXTRAS = {"plain": {}, "sink_tokens+kv_bias": {"n_sink_tokens": 2, "kv_bias": True}}


def _model(pos: str, attention: str, extra: dict):
    torch.manual_seed(0)
    cfg = tiny(d_model=32, d_ff=48, max_seq_len=2 * P, pos=pos, attention=attention, **extra)
    return build_model(cfg).eval()


@pytest.mark.parametrize("extra", list(EXTRAS), ids=list(EXTRAS))
@pytest.mark.parametrize("pos", POSITIONS)
@pytest.mark.parametrize("attention", ATTENTIONS)
@torch.no_grad()
def test_first_positions_do_not_depend_on_the_window_length(
    attention: str, pos: str, extra: str
) -> None:
    model = _model(pos, attention, EXTRAS[extra])
    ids = torch.randint(
        0, model.cfg.vocab_size, (2, 2 * P), generator=torch.Generator().manual_seed(1)
    )
    short, long = ids[:, :P], ids

    fused_short, fused_long = model(short), model(long)
    torch.testing.assert_close(fused_long[:, :P], fused_short, rtol=0, atol=ATOL)

    def probe(x: torch.Tensor) -> torch.Tensor:  # every layer's pattern: explicit attention
        return model.forward_probe(x, names=["attn.pattern"]).logits

    probe_short, probe_long = probe(short), probe(long)
    torch.testing.assert_close(probe_long[:, :P], probe_short, rtol=0, atol=ATOL)
    # the two paths agree too, so the probe measures the function that is trained
    torch.testing.assert_close(probe_short, fused_short, rtol=0, atol=ATOL)
