"""Issue #17: sink metrics on hand-built bidirectional maps, where every query sees every key,
against values computed by hand."""

from __future__ import annotations

import pytest
import torch

from sinklab.analysis import sinks
from sinklab.analysis.config import MetricsConfig
from sinklab.analysis.measure import measure
from sinklab.model.probe import ProbeOutput


def _two_anchor_map(T: int = 4) -> torch.Tensor:
    """Every query puts 0.5 on key 0, 0.3 on key T-1 and 0.2/(T-2) on each other key: a
    bidirectional map (a causal one cannot give query 0 any weight on key T-1)."""
    row = torch.full((T,), 0.2 / (T - 2))
    row[0], row[-1] = 0.5, 0.3
    return row.expand(T, T).clone()


def test_encoder_alpha_averages_over_all_queries() -> None:
    A = _two_anchor_map(4)
    # every column is constant, so its mean over all 4 queries is the column value itself
    torch.testing.assert_close(sinks.alpha_gu(A, causal=False), torch.tensor([0.5, 0.1, 0.1, 0.3]))
    # the causal formula on the same numbers divides the lower triangle by T - k:
    # key 0: 4 x 0.5 / 4; key 1: 3 x 0.1 / 3; key 2: 2 x 0.1 / 2; key 3: 0.3 / 1
    torch.testing.assert_close(sinks.alpha_gu(A, causal=True), torch.tensor([0.5, 0.1, 0.1, 0.3]))
    B = A.clone()
    B[0] = torch.tensor([0.1, 0.1, 0.1, 0.7])  # query 0 now looks at the last key
    # encoder: key 3 gets (0.7 + 0.3 + 0.3 + 0.3) / 4 = 0.4; key 0 (0.1 + 1.5) / 4 = 0.4
    torch.testing.assert_close(sinks.alpha_gu(B, causal=False), torch.tensor([0.4, 0.1, 0.1, 0.4]))
    # causal: row 0's weight above the diagonal is invisible, key 3 keeps only query 3's 0.3
    torch.testing.assert_close(sinks.alpha_gu(B, causal=True), torch.tensor([0.4, 0.1, 0.1, 0.3]))


def test_encoder_qk_cosine_takes_every_pair_but_key_and_query_0() -> None:
    # q_t and k_j on the unit circle at angles chosen so cos is easy: q along x for t >= 1
    q = torch.tensor([[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])[None, None]  # [1, 1, 3, 2]
    k = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])[None, None]
    # pairs (t, j), t, j >= 1: cos(q1,k1)=1, cos(q1,k2)=0, cos(q2,k1)=1, cos(q2,k2)=0 -> 0.5
    enc = sinks.qk_geometry(q, k, causal=False)
    torch.testing.assert_close(enc["qk/cos_q_kj"], torch.tensor([[0.5]]))
    # causal pairs 1 <= j <= t: (1,1)=1, (2,1)=1, (2,2)=0 -> 2/3
    dec = sinks.qk_geometry(q, k, causal=True)
    torch.testing.assert_close(dec["qk/cos_q_kj"], torch.tensor([[2 / 3]]))
    # cos_q_k0 is the same definition for both: mean over t >= 1 of cos(q_t, k_0) = 1
    torch.testing.assert_close(enc["qk/cos_q_k0"], torch.tensor([[1.0]]))


@pytest.mark.parametrize("causal", [True, False])
def test_measure_reads_causality_from_the_probe(causal: bool) -> None:
    T = 8
    B = _two_anchor_map(T)
    B[0] = torch.full((T,), 1.0 / T)  # query 0 spreads evenly
    pattern = B.expand(2, 1, T, T).clone()  # 2 windows, 1 head
    probe = ProbeOutput(
        logits=torch.zeros(2, T, 3),
        cache={"blocks.0.attn.pattern": pattern},
        n_layers=1,
        causal=causal,
    )
    rows = measure(probe, cfg=MetricsConfig(early_keys=T))
    got = rows[(rows["metric"] == "sink/alpha/key_7") & (rows["head"] == 0)]["value"].item()
    # key 7: queries 1..7 give 0.3 each, query 0 gives 1/8; encoder: mean over all 8
    expected = (7 * 0.3 + 1 / T) / T if not causal else 0.3  # causal: only query 7 sees key 7
    assert got == pytest.approx(expected)
    mass = rows[(rows["metric"] == "sink/first_token_mass") & (rows["head"] == 0)]["value"].item()
    assert mass == pytest.approx(0.5)  # mean over t >= 1 of A[t, 0], causal or not
