"""Spike anatomy on weights small enough that |U_k|_F and sum |lambda| are below 1 (the
clamps must not touch them), and the all-channel budget at its exact edge."""

from __future__ import annotations

import pytest
import torch

from sinklab.analysis import activations
from sinklab.analysis.activations import spike_anatomy, spike_fro_all, spike_matrix


def _weights() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """d = 2, d_ff = 1: U_k = W_down[k, 0] g u^T with g = (0.1, 0), u = (0, 0.1)."""
    w_gate = torch.tensor([[0.1, 0.0]])
    w_up = torch.tensor([[0.0, 0.1]])
    w_down = torch.tensor([[1.0], [0.5]])
    return w_gate, w_up, w_down


def test_eigen_share_of_a_small_matrix() -> None:
    """U_0 = [[0, 0.01], [0, 0]]: S = [[0, .005], [.005, 0]], eigenvalues +-0.005, so the top
    one holds half of sum |lambda| (0.01, below the clamp's floor)."""
    out = spike_anatomy(*_weights(), torch.tensor([0]))
    assert out["spike/u_fro/rank_0"] == pytest.approx(0.01)
    assert abs(out["spike/top_eig/rank_0"]) == pytest.approx(0.005)
    assert out["spike/eig_share/rank_0"] == pytest.approx(0.5)


def test_all_channel_norms_below_one_are_not_clamped() -> None:
    w_gate, w_up, w_down = _weights()
    got = spike_fro_all(w_gate, w_up, w_down)
    assert got is not None
    torch.testing.assert_close(got, torch.tensor([0.01, 0.005]))
    torch.manual_seed(0)
    g, u, w = torch.randn(6, 4) * 0.1, torch.randn(6, 4) * 0.1, torch.randn(4, 6) * 0.1
    want = torch.stack([spike_matrix(g, u, w, k).norm() for k in range(4)])
    torch.testing.assert_close(spike_fro_all(g, u, w), want, rtol=1e-4, atol=1e-7)


def test_budget_is_a_strict_bound_on_d_ff_squared_times_d(monkeypatch) -> None:
    """The real budget (5e9 multiply-adds) scaled down to 12 so the edge is cheap to reach."""
    monkeypatch.setattr(activations, "_ALL_CHANNEL_BUDGET", 12.0)
    at_budget = torch.ones(2, 3)  # d_ff = 2, d = 3: 2 * 2 * 3 = 12, not over
    assert spike_fro_all(at_budget, at_budget, torch.ones(3, 2)) is not None
    over = torch.ones(2, 4)  # 2 * 2 * 4 = 16 > 12
    assert spike_fro_all(over, over, torch.ones(4, 2)) is None
