"""Reference-frame measurements and classification on constructed maps of each type."""

from __future__ import annotations

import pytest
import torch

from sinklab.analysis import FRAME_CODE, frames, measure
from tests.analysis.analysis_builders import probe_from_maps, sink_map, uniform_causal

T = 64


def centralized() -> torch.Tensor:
    return sink_map(T, 0, 0.6)


def distributed() -> torch.Tensor:
    """Causal; rows t >= 3 put 0.2 on each of keys 0..3 (early delimiters), the rest evenly."""
    a = uniform_causal(T).clone()
    for t in range(4, T):
        a[t] = 0.2 / (t - 3) * (torch.arange(T) <= t).float()
        a[t, :4] = 0.2
    return a


def bidirectional() -> torch.Tensor:
    """An encoder map: every row puts 0.35 on the first and 0.35 on the last token."""
    a = torch.full((T, T), 0.3 / (T - 2))
    a[:, 0] = 0.35
    a[:, -1] = 0.35
    return a


def classify(a: torch.Tensor) -> str:
    code = int(frames.classify_frames(frames.received_attention(a[None]))[0])
    return frames.FRAME_CLASSES[code]


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        (centralized, "centralized"),
        (distributed, "distributed"),
        (bidirectional, "bidirectional"),
        (lambda: uniform_causal(T), "none"),
    ],
)
def test_constructed_frames_get_their_class(build, expected):
    a = build()
    assert torch.allclose(a.sum(-1), torch.ones(T))
    assert classify(a) == expected


def test_dominance_threshold_separates_centralized_from_distributed():
    a = distributed()
    a[4:, 0] += 0.3  # key 0 now far above the other three
    a[4:, 1:4] -= 0.1
    assert classify(a) == "centralized"


def test_two_start_anchors_are_not_bidirectional():
    a = bidirectional()
    a[:, 1], a[:, -1] = a[:, -1].clone(), a[:, 1].clone()  # move the end anchor to position 1
    assert classify(a) == "distributed"


def test_measure_reports_layer_and_model_class():
    df = measure(probe_from_maps([centralized(), uniform_causal(T), centralized(), distributed()]))
    cls = df[df.metric == "frames/class"]
    layer_rows = cls[cls["head"] == -1].set_index("layer").value
    assert layer_rows.to_dict() == {
        0: FRAME_CODE["centralized"],
        1: FRAME_CODE["none"],
        2: FRAME_CODE["centralized"],
        3: FRAME_CODE["distributed"],
        -1: FRAME_CODE["centralized"],
    }
    assert frames.model_frame([FRAME_CODE["none"]] * 3) == FRAME_CODE["none"]
    assert (
        frames.model_frame([FRAME_CODE["distributed"], FRAME_CODE["bidirectional"]])
        == FRAME_CODE["bidirectional"]
    )


def test_reference_tokens_threshold_fallback_and_cap():
    df = measure(probe_from_maps([distributed(), uniform_causal(T)]))

    def at(m, layer):
        return df[(df.metric == m) & (df.layer == layer) & (df["head"] == -1)].value.tolist()

    assert at("frames/ref_count", 0) == [4.0]
    assert sorted(at("frames/ref_position/rank_0", 0) + at("frames/ref_position/rank_1", 0)) == [
        0.0,
        1.0,
    ]
    assert at("frames/ref_fallback", 0) == [0.0]
    # uniform: nobody passes 0.1, so the top 10 % (7 keys) are taken; only 4 get rows
    assert at("frames/ref_fallback", 1) == [1.0]
    assert at("frames/ref_count", 1) == [7.0]
    assert at("frames/ref_position/rank_0", 1) == [0.0]
    assert at("frames/ref_position/rank_3", 1) == [3.0]
    assert at("frames/ref_position/rank_4", 1) == []
    r = torch.full((1, 10), 0.2)
    _, count, _ = frames.reference_tokens(r)
    assert int(count) == 3  # ten keys pass, capped at 30 %


def test_graph_measures_of_a_perfect_star():
    star = sink_map(T, 0, 1.0)  # every query attends only to key 0
    g = frames.graph_measures(star[None], tau=0.02)
    n = T
    assert g["frames/indegree_gini"].item() == pytest.approx((n - 1) / n)
    assert g["frames/star_likeness"].item() == pytest.approx(0.3 + 0.7 * (n - 1) / n)
    assert g["frames/degree_centralisation"].item() == pytest.approx(1.0)
    # symmetrised edge weights 0.5 on a star: Laplacian spectrum 0, 0.5 (x n-2), 0.5 n
    assert g["frames/fiedler"].item() == pytest.approx(0.5, abs=1e-6)
    s = frames.spectral_measures(star[None])
    assert s["frames/stable_rank"].item() == pytest.approx(1.0)
    assert s["frames/top_column_mass"].item() == pytest.approx(1.0)
    assert s["frames/row_entropy"].item() == pytest.approx(0.0, abs=1e-9)


def test_uniform_and_disconnected_maps():
    u = frames.spectral_measures(uniform_causal(T)[None])
    assert u["frames/row_entropy_norm"].item() == pytest.approx(1.0)
    g = frames.graph_measures(torch.eye(T)[None], tau=0.02)  # self-attention only: no edges
    assert g["frames/indegree_gini"].item() == 0.0
    assert g["frames/fiedler"].item() == pytest.approx(0.0, abs=1e-9)
    # identity: eigenvalues all 1 -> participation ratio T
    assert frames.spectral_measures(torch.eye(T)[None])[
        "frames/participation_ratio"
    ].item() == pytest.approx(T)
