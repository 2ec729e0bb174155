"""A prefixed sink must not set the static quantisation range (issue #32).

The whole point of PrefixQuant and CushionCache is that the prefix takes the massive activation
and is kept in full precision, so the per-tensor range is set by the text tokens alone. If the
prefix's |x| = 1000 leaked into the range, the text tokens would be rounded on a grid ~500x too
coarse and the prefix's benefit would be understated. Hand-built model, hand values.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from sinklab.analysis import quant
from sinklab.analysis.prefix import PrefixConfig, prefix_eval
from sinklab.analysis.quant import QuantConfig, calibrate, fake_quant

V, SINK, PREFIX_TOKEN = 9, 1000.0, 4
SHARPNESS = 32.0  # logit scale of the hand-built head: peaked, so rounding shows in the ppl
BITS = 8
# 8-bit asymmetric over [-1, 1]: scale 2/255, so an in-range value moves by at most scale/2;
# 1.0 itself sits half a level above the top level (zero point 128) and moves by exactly 1/255
TEXT_BOUND = 1.0 / 255


def feature(token: int) -> float:
    """Channel 0 of a token's embedding: tokens 0..8 -> -1, -0.75, ..., 1."""
    return (token - 4) / 4


class SinkFirst(nn.Module):
    """The model's own sink tokens (`n_sink_tokens`, prepended inside the model like the real
    one's) and whatever stands first after them take the massive activation: channel 1 of
    positions 0..n_sink_tokens is 1000 (the prefix when there is one, otherwise the first text
    token). Every other value is its token's embedding, |x| <= 1. One quantised linear (identity, so its
    weight quantises exactly and its output is its quantised input), then an FP head that reads
    channel 0 only (so the sink changes no FP prediction) and whose logit for token k peaks
    when the feature is that of k - 1: a ramp 0, 1, ..., 8 is predictable. `hidden` keeps the
    last linear output, to read the quantisation error directly."""

    def __init__(self, n_sink_tokens: int = 0) -> None:
        super().__init__()
        self.cfg = SimpleNamespace(n_sink_tokens=n_sink_tokens, max_seq_len=32)
        self.emb = nn.Embedding(V, 2)
        self.lin = nn.Linear(2, 2, bias=False)
        self.lm_head = nn.Linear(2, V)
        with torch.no_grad():
            for t in range(V):
                self.emb.weight[t] = torch.tensor([feature(t), -feature(t) / 2])
            self.lin.weight.copy_(torch.eye(2))
            # logit_k = -c (u - u_{k-1})^2 up to a term common to every k
            prev = torch.tensor([feature(k - 1) for k in range(V)])
            self.lm_head.weight.zero_()
            self.lm_head.weight[:, 0] = 2 * SHARPNESS * prev
            self.lm_head.bias.copy_(-SHARPNESS * prev**2)
        self.hidden = torch.empty(0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        s = self.cfg.n_sink_tokens
        x = self.emb(ids)
        x = torch.cat([x.new_zeros(x.shape[0], s, 2), x], dim=1)
        x[:, : s + 1, 1] = SINK
        self.hidden = self.lin(x)
        return self.lm_head(self.hidden[:, s:])  # the sink tokens predict nothing


def ramps(n: int) -> torch.Tensor:
    """n windows 0, 1, ..., 8: every text value of channel 0 from -1 to 1 appears."""
    return torch.arange(V).repeat(n, 1)


SINK_TOKENS = pytest.mark.parametrize("n_sink_tokens", [0, 2])


@SINK_TOKENS
def test_the_static_range_with_a_prefix_is_the_text_tokens_alone(n_sink_tokens: int):
    model, calib = SinkFirst(n_sink_tokens), [ramps(2)]
    # with the prefix, it and the model's sink tokens hold |x| = 1000: the range is the text's
    assert calibrate(model, calib, [PREFIX_TOKEN]) == {"lin": (-1.0, 1.0)}
    # without one, the first text token is the sink and is quantised like the rest: in range
    assert calibrate(model, calib) == {"lin": (-1.0, SINK)}


@SINK_TOKENS
def test_text_tokens_quantise_within_half_a_level_of_the_text_range(n_sink_tokens: int):
    model, ids, prefix = SinkFirst(n_sink_tokens), ramps(2), [PREFIX_TOKEN]
    ranges = calibrate(model, [ids], prefix)
    skip = n_sink_tokens + len(prefix)
    with torch.no_grad():
        model(quant.with_prefix(ids, prefix))
        fp = model.hidden
        with fake_quant(model, QuantConfig(bits=BITS), "per_tensor_static", ranges, n_skip=skip):
            model(quant.with_prefix(ids, prefix))
            q = model.hidden
    text_error = (q[:, skip:] - fp[:, skip:]).abs().max().item()
    assert text_error <= TEXT_BOUND + 1e-6
    assert text_error > 0  # it did quantise: the bound is not met by doing nothing
    assert torch.equal(q[:, :skip], fp[:, :skip])  # the sinks and the prefix stay exact
    assert q[:, skip - 1, 1].tolist() == [SINK, SINK]


@SINK_TOKENS
def test_prefix_eval_quantises_the_text_with_the_text_range(n_sink_tokens: int):
    """End to end: with the BOS prefix taking the sink, every activation mode's perplexity stays
    within the bound the text range gives; without the prefix, the per-tensor modes' range
    holds 1000 and the perplexity explodes. The bound: each text value moves by at most 1/255,
    so a logit moves by at most e = max_k |w_k0| / 255, a log-probability by at most 2e."""
    model, ids = SinkFirst(n_sink_tokens), ramps(3)
    qcfg = QuantConfig(bits=BITS, calibration_batches=1)
    pcfg = PrefixConfig(prefixes=("bos",), bos_id=PREFIX_TOKEN)
    df = prefix_eval(model, ids, [ramps(2)], qcfg, pcfg)
    v = dict(zip(df.metric, df.value, strict=True))
    e = float(model.lm_head.weight[:, 0].detach().abs().max()) * TEXT_BOUND
    fp = v["quant/prefix/bos/ppl/fp"]
    assert fp < 2.0  # the ramp is predictable, so rounding has something to spoil
    for mode in quant.MODES:
        ratio = v[f"quant/prefix/bos/ppl/{mode}"] / fp
        assert math.exp(-2 * e) <= ratio <= math.exp(2 * e), mode
    # the control: without the prefix the sink is text and the per-tensor ranges span 1000
    assert v["quant/ppl/per_tensor_static"] > 100 * v["quant/ppl/fp"]
