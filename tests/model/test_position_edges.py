"""Position encodings built where they are asked for: on the requested device (the meta
device, as a model built there needs, stands in for an accelerator), in float32 whatever
torch's default dtype, and RoPE keeping the dtype of what it rotates."""

from __future__ import annotations

import math

import pytest
import torch

from sinklab.model.position import (
    alibi_slopes,
    apply_rope,
    causal_bias,
    rope_cos_sin,
    sinusoidal_table,
)

META = torch.device("meta")


def test_tables_are_built_on_the_requested_device():
    cos, sin = rope_cos_sin(5, 4, 10000.0, device=META)
    assert cos.device == META and sin.device == META and cos.shape == (5, 4)
    for causal in (True, False):
        bias = causal_bias(4, alibi_slopes(2), device=META, causal=causal)
        assert bias.device == META and bias.shape == (2, 4, 4)
        assert causal_bias(4, device=META, causal=causal).device == META
    table = sinusoidal_table(4, 6, device=META)
    assert table.device == META and table.shape == (4, 6)


def test_alibi_slopes_are_float32_whatever_the_default_dtype():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        slopes = alibi_slopes(4)
    finally:
        torch.set_default_dtype(previous)
    assert slopes.dtype == torch.float32
    assert slopes.tolist() == [1 / 4, 1 / 16, 1 / 64, 1 / 256]


def test_apply_rope_keeps_the_dtype_of_its_input():
    """bf16 activations stay bf16 (float32 tables are cast, not promoted to), and equal the
    float32 rotation rounded to bf16 within bf16 precision."""
    cos, sin = rope_cos_sin(3, 4, 10000.0)
    x = torch.randn(2, 3, 4)
    out = apply_rope(x.bfloat16(), cos, sin)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(
        out.float(), apply_rope(x.bfloat16().float(), cos, sin), atol=0.05, rtol=0.02
    )
    # position 1 of channel pair (0, 2) turns by 1 radian
    one = torch.tensor([1.0, 0.0, 0.0, 0.0])
    rotated = apply_rope(one.expand(3, 4), cos, sin)[1]
    assert rotated.tolist() == pytest.approx([math.cos(1.0), 0.0, math.sin(1.0), 0.0], abs=1e-6)
