"""Fake-quant W/A: the quantisers against hand values, the context manager's hygiene, the
16-bit identity, and why per-token survives a massive activation that per-tensor does not."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sinklab.analysis import quant, template_of
from sinklab.analysis.quant import (
    QuantConfig,
    calibrate,
    fake_quant,
    perplexity,
    quantize_activation,
    quantize_asymmetric,
    quantize_symmetric,
    quantize_weight,
    w8a8_eval,
)
from sinklab.errors import ConfigError
from sinklab.model.config import ModelConfig
from sinklab.model.transformer import build_model


def tiny(**kw) -> nn.Module:
    torch.manual_seed(0)
    cfg = dict(vocab_size=16, d_model=32, n_layers=2, n_heads=2, max_seq_len=64)
    return build_model(ModelConfig(**{**cfg, **kw})).eval()


def batches(n: int, size: int = 4, T: int = 16, seed: int = 1) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 16, (size, T), generator=g) for _ in range(n)]


# -- quantisers -------------------------------------------------------------------------------


def test_symmetric_quantiser_hand_values():
    # 3 bits: levels -3..3, scale max|x| / 3 = 1/3; x / scale = [-3, 1.2, 0.3, 3] -> [-3, 1, 0, 3]
    x = torch.tensor([-1.0, 0.4, 0.1, 1.0])
    torch.testing.assert_close(quantize_symmetric(x, 3), torch.tensor([-1.0, 1 / 3, 0.0, 1.0]))


def test_weight_quantiser_per_channel_and_per_tensor_hand_values():
    w = torch.tensor([[2.6, 1.2], [-6.0, 2.5]])
    # per row, 3 bits: row 0 scale 2.6/3 (1.2 -> 1.385 -> 1); row 1 scale 2 (2.5 -> 1.25 -> 1)
    per_row = torch.tensor([[2.6, 2.6 / 3], [-6.0, 2.0]])
    torch.testing.assert_close(quantize_weight(w, 3, "per_channel"), per_row)
    # one scale 2: [1.3, 0.6, -3, 1.25] -> [1, 1, -3, 1]
    per_tensor = torch.tensor([[2.0, 2.0], [-6.0, 2.0]])
    torch.testing.assert_close(quantize_weight(w, 3, "per_tensor"), per_tensor)


def test_asymmetric_quantiser_hand_values():
    # 2 bits over [-1, 3]: scale 4/3, zero point round(0.75) = 1, levels 0..3
    # x / scale = [-0.75, 0, 0.375, 2.25, 3.75] -> round [-1, 0, 0, 2, 4] + 1 -> clamp [0, 1, 1, 3, 3]
    x = torch.tensor([-1.0, 0.0, 0.5, 3.0, 5.0])
    want = torch.tensor([-4 / 3, 0.0, 0.0, 8 / 3, 8 / 3])
    torch.testing.assert_close(quantize_asymmetric(x, -1.0, 3.0, 2), want)
    # a range that misses 0 is widened to hold it: [1, 3] -> [0, 3], scale 1 at 2 bits
    torch.testing.assert_close(
        quantize_asymmetric(torch.tensor([1.4, 2.6]), 1.0, 3.0, 2), torch.tensor([1.0, 3.0])
    )


def test_a_massive_activation_ruins_per_tensor_but_not_per_token():
    """One token (the sink) carries 1000 in one channel: a per-tensor range spends the int8
    levels on it and the other tokens round to a few levels; per-token ranges do not care."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 32, generator=g)
    rest = (slice(None), slice(1, None))

    def err(t: torch.Tensor, mode: str) -> float:
        rng = (float(t.min()), float(t.max()))
        q = quantize_activation(t, 8, mode, rng)
        return float((q - t)[rest].pow(2).mean() / t[rest].pow(2).mean())

    clean = {m: err(x, m) for m in quant.MODES}
    spiked = x.clone()
    spiked[:, 0, 5] = 1000.0
    hit = {m: err(spiked, m) for m in quant.MODES}
    assert hit["per_tensor_static"] > 100 * clean["per_tensor_static"]
    assert hit["per_tensor_dynamic"] > 100 * clean["per_tensor_dynamic"]
    assert hit["per_token_dynamic"] == pytest.approx(clean["per_token_dynamic"], rel=1e-6)
    assert hit["per_token_dynamic"] < 1e-4


# -- the model-level machinery ----------------------------------------------------------------


def test_fake_quant_restores_weights_and_removes_hooks_bit_identically():
    model = tiny()
    ids = batches(1)[0]
    weights = {n: p for n, p in model.named_parameters()}
    before = {n: p.detach().clone() for n, p in weights.items()}
    lm_head = model.lm_head.weight.detach().clone()
    with torch.no_grad():
        fp = model(ids)
    cfg = QuantConfig(bits=4)
    ranges = calibrate(model, batches(2))
    for mode in quant.MODES:
        with fake_quant(model, cfg, mode, ranges), torch.no_grad():
            q = model(ids)
            assert not torch.equal(q, fp)  # it did quantise
            assert torch.equal(model.lm_head.weight, lm_head)  # the LM head stays FP
    with torch.no_grad():
        after = model(ids)
    assert torch.equal(after, fp)
    for n, p in model.named_parameters():
        assert p is weights[n] and torch.equal(p, before[n]), n
    for _, lin in quant.quantised_linears(model):
        assert not lin._forward_pre_hooks and not lin._forward_hooks


def test_fake_quant_restores_on_error():
    model = tiny()
    w = model.blocks[0].attn.wq.weight
    ptr, saved = w.data_ptr(), w.detach().clone()
    with (
        pytest.raises(RuntimeError, match="boom"),
        fake_quant(model, QuantConfig(), "per_token_dynamic"),
    ):
        raise RuntimeError("boom")
    assert w.data_ptr() == ptr and torch.equal(w, saved)
    assert not model.blocks[0].attn.wq._forward_pre_hooks


def test_lm_head_is_not_quantised():
    names = [n for n, _ in quant.quantised_linears(tiny())]
    assert "lm_head" not in names and "blocks.0.attn.wq" in names and "blocks.1.mlp.w_down" in names


def test_calibration_ranges_are_min_max_of_the_first_linear_input():
    model = tiny()
    data = batches(3)
    ranges = calibrate(model, data)
    with torch.no_grad():  # pre-norm: the input of wq is norm_attn(token embeddings)
        xs = [model.blocks[0].norm_attn(model.tok_emb(b)) for b in data]
    lo = min(float(x.min()) for x in xs)
    hi = max(float(x.max()) for x in xs)
    assert ranges["blocks.0.attn.wq"] == pytest.approx((lo, hi))


def test_skipped_prefix_positions_stay_full_precision():
    model = tiny()
    ids = batches(1, T=12)[0]
    with torch.no_grad():
        fp = model(ids)
        with fake_quant(model, QuantConfig(bits=3), "per_token_dynamic", n_skip=4):
            q = model(ids)
    torch.testing.assert_close(q[:, :4], fp[:, :4], rtol=1e-5, atol=1e-5)
    assert (q[:, 4:] - fp[:, 4:]).abs().max() > 1e-2


def test_sixteen_bits_reproduce_the_fp_perplexity():
    model = tiny(init_std=0.2)  # peaked logits, so quantisation error shows in the perplexity
    data = batches(2, size=8, seed=5)
    # calibrated on the evaluation windows themselves: static ranges clip nothing, so what is
    # left is rounding alone (on other data, clipping alone moved this model's ppl by 0.09)
    cfg = QuantConfig(bits=16, calibration_batches=2)
    values = _values(w8a8_eval(model, torch.cat(data), data, cfg))
    fp = values["quant/ppl/fp"]
    assert fp == pytest.approx(perplexity(model, torch.cat(data)))
    for mode in quant.MODES:
        assert abs(values[f"quant/ppl/{mode}"] - fp) < 1e-3, mode
        increase = values[f"quant/ppl_increase/{mode}"]
        assert increase == pytest.approx(values[f"quant/ppl/{mode}"] - fp)
    # and few bits do hurt, so the check above can fail
    low = _values(
        w8a8_eval(model, torch.cat(data), data, QuantConfig(bits=3, calibration_batches=2))
    )
    for mode in quant.MODES:
        assert abs(low[f"quant/ppl/{mode}"] - fp) > 0.1, mode


def test_w8a8_rows_are_registered_model_rows():
    out = w8a8_eval(tiny(), batches(1)[0], batches(2), QuantConfig(calibration_batches=2))
    assert set(out.metric) == {
        "quant/bits",
        "quant/ppl/fp",
        "quant/max_act",
        "quant/token_max_over_median",
        *(f"quant/ppl/{m}" for m in quant.MODES),
        *(f"quant/ppl_increase/{m}" for m in quant.MODES),
    }
    assert all(template_of(n) is not None for n in out.metric)
    assert (out["layer"] == -1).all() and (out["head"] == -1).all()


def _values(df) -> dict[str, float]:
    return dict(zip(df.metric, df.value, strict=True))


def test_perplexity_is_the_exp_mean_nll_of_tokens_one_onwards():
    model = tiny()
    ids = batches(1)[0]
    with torch.no_grad():
        logp = model(ids).log_softmax(-1)
    nll = -logp[:, :-1].gather(-1, ids[:, 1:, None]).mean()
    assert perplexity(model, ids, batch_size=3) == pytest.approx(float(nll.exp()), rel=1e-5)


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"bits": 1}, "quant.bits"),
        ({"bits": 17}, "quant.bits"),
        ({"modes": ["per_tensor_static", "per_channel_magic"]}, "quant.modes"),
        ({"calibration_batches": 0}, "quant.calibration_batches"),
        ({"weight_granularity": "per_row"}, "quant.weight_granularity"),
    ],
)
def test_bad_quant_config_is_a_one_line_error_naming_the_key(values, key):
    with pytest.raises(ConfigError) as err:
        QuantConfig.from_dict(values)
    assert err.value.key == key and "\n" not in str(err.value)


def test_too_few_calibration_batches_names_the_key():
    with pytest.raises(ConfigError, match=r"^quant\.calibration_batches: needs 16"):
        w8a8_eval(tiny(), batches(1)[0], batches(3))
