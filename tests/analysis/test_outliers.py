"""Outlier metrics against hand computations, and the linear-input sites against hooks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sinklab.analysis import MetricsConfig, measure, outliers, template_of
from sinklab.analysis.capture import capture
from sinklab.errors import ConfigError
from sinklab.model.config import ModelConfig
from sinklab.model.probe import ProbeOutput
from sinklab.model.transformer import build_model


def test_kurtosis_of_one_spike_matches_the_hand_value():
    # [0, 0, 0, 4]: mean 1, centred [-1, -1, -1, 3], var 12/4 = 3, mu4 84/4 = 21 -> 21/9
    x = torch.tensor([[0.0, 0.0, 0.0, 4.0], [1.0, -1.0, 1.0, -1.0]]).reshape(2, 2, 2)
    k = outliers.kurtosis(x)
    assert k[0].item() == pytest.approx(7 / 3, rel=1e-6)
    assert k[1].item() == pytest.approx(1.0, rel=1e-6)  # two-point symmetric: mu4 = var^2
    assert torch.isnan(outliers.kurtosis(torch.ones(1, 3, 3))).all()


def test_kurtosis_of_a_gaussian_is_about_three():
    g = torch.Generator().manual_seed(0)
    k = outliers.kurtosis(torch.randn(2, 400, 100, generator=g))
    assert k.tolist() == pytest.approx([3.0, 3.0], abs=0.05)


def test_token_max_over_median_on_a_hand_built_tensor():
    # token maxima over channels: [1, 2, 3, 100] (window 0), [5, 5, 5, 5] (window 1)
    x = torch.tensor(
        [
            [[1.0, -0.5], [0.0, -2.0], [3.0, 1.0], [-100.0, 7.0]],
            [[5.0, 0.0], [-5.0, 1.0], [0.0, 5.0], [5.0, 5.0]],
        ]
    )
    tmax = outliers.token_max(x)
    assert tmax.tolist() == [[1.0, 2.0, 3.0, 100.0], [5.0, 5.0, 5.0, 5.0]]
    # lower median: 2 in window 0
    assert outliers.max_over_median(tmax).tolist() == [50.0, 1.0]


def test_outlier_tokens_at_eta_64():
    tmax = torch.ones(3, 8)
    tmax[0, 0] = 65.0  # 65 > 64 x 1: an outlier
    tmax[0, 5] = 64.0  # not strictly above: not one
    tmax[1, 0] = 1000.0
    tmax[1, 3] = 70.0
    mask = outliers.outlier_mask(tmax, 64.0)
    assert mask.sum(1).tolist() == [1, 2, 0]
    assert mask.nonzero().tolist() == [[0, 0], [1, 0], [1, 3]]


def test_eta_at_most_one_is_a_config_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"^metrics\.outlier_eta: must be > 1"):
        MetricsConfig(outlier_eta=1.0)
    with pytest.raises(ConfigError, match=r"^metrics\.outlier_eta"):
        MetricsConfig.from_dict({"outlier_eta": 0.5})


def _spiky_probe() -> tuple[ProbeOutput, torch.Tensor]:
    """Block output of 4 windows x 6 tokens x 3 channels: 1s, with massive values at position 0
    of every window and at position 4 of window 0; token ids say which token carries them."""
    h = torch.ones(4, 6, 3)
    h[:, 0, 1] = -500.0
    h[0, 4, 2] = 300.0
    ids = torch.tensor([[9, 1, 2, 3, 7, 5]] * 3 + [[8, 1, 2, 3, 4, 5]])
    probe = ProbeOutput(logits=torch.zeros(4, 6, 2), cache={"blocks.0.resid_post": h}, n_layers=1)
    return probe, ids


def test_outlier_rows_count_positions_and_token_ids():
    probe, ids = _spiky_probe()
    rows = {m: v for layer, _h, m, v in outliers.outlier_rows(probe, input_ids=ids) if layer == 0}
    site = "outliers/resid_post"
    assert rows[f"{site}/max_abs"] == 500.0
    assert rows[f"{site}/n_outlier_tokens"] == pytest.approx(5 / 4)
    assert rows[f"{site}/token_max_over_median"] == 500.0  # 500 / a median of 1
    assert rows[f"{site}/position/rank_0"] == 0.0
    assert rows[f"{site}/position_share/rank_0"] == 1.0
    assert rows[f"{site}/position/rank_1"] == 4.0
    assert rows[f"{site}/position_share/rank_1"] == 0.25
    assert f"{site}/position/rank_2" not in rows  # only positions that hold an outlier
    # outlier tokens: id 9 three times, 8 once, 7 once (ties by the smaller id)
    assert [rows[f"{site}/token/rank_{i}"] for i in range(3)] == [9.0, 7.0, 8.0]
    assert rows[f"{site}/token_share/rank_0"] == pytest.approx(3 / 5)


def _hooked_inputs(model: nn.Module, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each linear's real input, caught by forward pre-hooks: the independent reference."""
    seen: dict[str, torch.Tensor] = {}
    handles = [
        m.register_forward_pre_hook(lambda _m, a, n=name: seen.__setitem__(n, a[0].detach()))
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear)
    ]
    with torch.no_grad():
        model(ids)
    for h in handles:
        h.remove()
    return seen


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_sites_are_the_inputs_of_the_linear_layers(norm_position):
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(vocab_size=11, d_model=16, n_layers=2, n_heads=2, norm_position=norm_position)
    ).eval()
    ids = torch.randint(0, 11, (3, 9))
    probe = capture(model, ids)
    real = _hooked_inputs(model, ids)
    for layer in range(2):
        sites = outliers.site_tensors(probe, layer, model)
        assert tuple(sites) == outliers.SITES
        b = f"blocks.{layer}"
        pairs = {
            "qkv_in": f"{b}.attn.wq",
            "o_in": f"{b}.attn.wo",
            "gate_up_in": f"{b}.mlp.w_up",
            "down_in": f"{b}.mlp.w_down",
        }
        for site, linear in pairs.items():
            torch.testing.assert_close(sites[site], real[linear], msg=f"{site} {norm_position}")


def test_measure_emits_registered_outlier_rows_and_the_switch_removes_them():
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=11, d_model=16, n_layers=2, n_heads=2))
    ids = torch.randint(0, 11, (4, 8))
    probe = capture(model, ids)
    df = measure(probe, model=model, input_ids=ids)
    names = {n for n in df.metric if n.startswith("outliers/")}
    for site in outliers.SITES:
        assert f"outliers/{site}/kurtosis_max" in names
        assert template_of(f"outliers/{site}/max_abs") is not None
    assert all(template_of(n) is not None for n in names)
    assert template_of("outliers/nowhere/max_abs") is None
    off = measure(probe, model=model, input_ids=ids, cfg=MetricsConfig(outliers=False))
    assert not any(n.startswith("outliers/") for n in off.metric)
