"""`measure` passes every `MetricsConfig` knob, flag and window average through to the metric
functions: each row is checked against a hand computation (or a loop written here) on
probes whose windows and heads differ, and each knob against a map built so that the
non-default value changes the answer."""

from __future__ import annotations

import dataclasses
import math

import pandas as pd
import pytest
import torch

from sinklab.analysis import MetricsConfig, activations, frames, measure, names, outliers, sinks
from sinklab.analysis.capture import capture
from sinklab.model.config import ModelConfig
from sinklab.model.probe import ProbeOutput
from sinklab.model.transformer import build_model
from tests.analysis.analysis_builders import OracleModel, probe_from_maps, qk_geometry_by_loops

ONLY = dict(sinks=False, qk=False, massive=False, spikes=False, frames=False, dormancy=False)
ONLY.update(outliers=False)


def only(*groups: str, **knobs) -> MetricsConfig:
    """A config with just `groups` on (the rest off), plus `knobs`."""
    return MetricsConfig(**{**ONLY, **{g: True for g in groups}, **knobs})


def per_head(df: pd.DataFrame, metric: str, layer: int = 0) -> dict[int, float]:
    sel = df[(df.metric == metric) & (df.layer == layer) & (df["head"] >= 0)]
    return dict(zip(sel["head"].tolist(), sel.value.tolist(), strict=True))


def one(df: pd.DataFrame, metric: str, layer: int = 0, head: int = -1) -> float:
    sel = df[(df.metric == metric) & (df.layer == layer) & (df["head"] == head)]
    assert len(sel) == 1, (metric, layer, head, len(sel))
    return float(sel.value.iloc[0])


def random_causal_pattern(n: int, h: int, t: int, n_slots: int, seed: int) -> torch.Tensor:
    """Softmax of random scores over always-visible slots and causally visible tokens:
    every window and head different."""
    g = torch.Generator().manual_seed(seed)
    scores = 3.0 * torch.randn(n, h, t, n_slots + t, generator=g)
    hidden = torch.ones(t, t, dtype=torch.bool).triu(1)
    scores[..., n_slots:] = scores[..., n_slots:].masked_fill(hidden, float("-inf"))
    return scores.softmax(-1)


# -- window averages ---------------------------------------------------------------------------

N, H, T = 2, 3, 4


def test_sink_rows_average_over_windows_per_head():
    """N = 2 windows, H = 3 heads, one slot: every per-head row is the mean over windows of
    the per-window value, computed here with loops."""
    p = random_causal_pattern(N, H, T, 1, seed=0)
    assert not torch.allclose(p[0], p[1])
    df = measure(probe_from_maps([p], extra_slots=("s0",)), cfg=only("sinks", eps=0.2))
    tok = p[..., 1:]
    for h in range(H):
        ftm = sum(sum(float(tok[n, h, t, 0]) for t in range(1, T)) / (T - 1) for n in range(N))
        col = [
            [sum(float(tok[n, h, t, k]) for t in range(T)) / T for k in range(T)] for n in range(N)
        ]
        ratio = sum(100.0 * (max(col[n][: T // 2 + 1]) > 0.2) for n in range(N))
        slot = [sum(float(p[n, h, t, 0]) for t in range(T)) / T for n in range(N)]
        assert per_head(df, names.FIRST_TOKEN_MASS)[h] == pytest.approx(ftm / N, rel=1e-5)
        assert per_head(df, names.SINK_RATIO)[h] == pytest.approx(ratio / N)
        assert per_head(df, "slot_mass/s0")[h] == pytest.approx(sum(slot) / N, rel=1e-5)
        pct = sum(100.0 * (s > 0.2) for s in slot) / N
        assert per_head(df, "slot_sink_pct/s0")[h] == pytest.approx(pct)
    assert set(per_head(df, names.FIRST_TOKEN_MASS)) == {0, 1, 2}


def _qk_by_loops(q: torch.Tensor, k: torch.Tensor, causal: bool) -> dict[str, list[float]]:
    """Per-head window means of the independent loop reference."""
    return {m: v.mean(0).tolist() for m, v in qk_geometry_by_loops(q, k, causal).items()}


@pytest.mark.parametrize("causal", [True, False])
def test_qk_rows_are_window_means_with_the_probes_causality(causal: bool):
    """Causal probe: cos_q_kj over pairs j <= t; encoder probe (causal False): all pairs."""
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(N, H, 5, 4, generator=g), torch.randn(N, H, 5, 4, generator=g)
    probe = ProbeOutput(
        logits=torch.zeros(N, 1, 1),
        cache={"blocks.0.attn.q": q, "blocks.0.attn.k": k},
        n_layers=1,
        causal=causal,
    )
    df = measure(probe, cfg=only("qk"))
    want = _qk_by_loops(q, k, causal)
    for metric, key in (
        ("qk/k0_norm", "k0"),
        ("qk/kt_norm_mean", "kt"),
        ("qk/cos_q_k0", "c0"),
        ("qk/cos_q_kj", "cj"),
    ):
        got = per_head(df, metric)
        assert [got[h] for h in range(H)] == pytest.approx(want[key], rel=1e-5, abs=1e-6), metric
    other = _qk_by_loops(q, k, not causal)["cj"]
    assert other != pytest.approx(want["cj"], rel=1e-3)  # the two pair sets do differ here


# -- sink knobs --------------------------------------------------------------------------------


def test_sink_key_at_or_past_the_window_is_skipped_and_later_keys_still_measured():
    """sink_keys (0, 4, 1) with T = 4: key 4 has no column (no row), key 1 after it is still
    measured. A key-1 sink of mass 0.9: alpha_1 = 0.9 (> eps), alpha_0 = (1 + .1 + .05 + .1/3)/4."""
    from tests.analysis.analysis_builders import sink_map

    df = measure(probe_from_maps([sink_map(4, 1, 0.9)]), cfg=only("sinks", sink_keys=(0, 4, 1)))
    assert one(df, "sink/sink_pct/key_1") == pytest.approx(100.0)
    assert one(df, names.SINK1) == pytest.approx(0.0)
    assert not df.metric.str.endswith("key_4").any()


def _diagonal_then_key(t_len: int, key: int) -> torch.Tensor:
    """Rows t < key attend to themselves, rows t >= key to `key`: alpha'_k = 1/T for k < key,
    alpha'_key = (T - key)/T, later keys 0."""
    a = torch.zeros(t_len, t_len)
    for t in range(t_len):
        a[t, min(t, key)] = 1.0
    return a


@pytest.mark.parametrize(("max_key", "hit"), [(None, 0.0), (6, 100.0), (9, 100.0), (5, 0.0)])
def test_sink_ratio_max_key_reaches_the_measure_rows(max_key: int | None, hit: float):
    """T = 8, eps 0.2: keys 0..5 get alpha' 1/8, key 6 gets 2/8. The default window (keys up
    to T // 2 = 4) misses it; sink_ratio_max_key 6 (or past the end) finds it."""
    a = _diagonal_then_key(8, 6)
    cfg = only("sinks", eps=0.2, sink_ratio_max_key=max_key)
    df = measure(probe_from_maps([a]), cfg=cfg)
    assert set(per_head(df, names.SINK_RATIO).values()) == {hit}
    direct = sinks.sink_ratio_hit(a.expand(2, 3, 8, 8), 0.2, max_key).mean(0) * 100.0
    assert direct.tolist() == [hit] * 3


def test_slot_sink_needs_mass_strictly_above_eps():
    """A slot whose mean attention is exactly eps (0.25) is not a sink; 0.5 is."""
    t_len = 4
    tokens = torch.ones(t_len, t_len).tril()
    tokens = tokens / tokens.sum(-1, keepdim=True)
    p = torch.zeros(2, 3, t_len, 1 + t_len)
    for h, slot in enumerate((0.25, 0.5, 0.0)):
        p[:, h, :, 0] = slot
        p[:, h, :, 1:] = (1 - slot) * tokens
    df = measure(probe_from_maps([p], extra_slots=("s0",)), cfg=only("sinks", eps=0.25))
    assert per_head(df, "slot_mass/s0") == pytest.approx({0: 0.25, 1: 0.5, 2: 0.0})
    assert per_head(df, "slot_sink_pct/s0") == {0: 0.0, 1: 100.0, 2: 0.0}


def test_proxy_flag_says_whether_scores_were_normalised():
    a = torch.ones(4, 4).tril() / torch.ones(4, 4).tril().sum(-1, keepdim=True)
    for normalised, flag in ((True, 0.0), (False, 1.0)):
        df = measure(probe_from_maps([a], normalised=normalised), cfg=only("sinks"))
        assert one(df, "sink/proxy_scores", layer=-1) == flag


# -- frames ------------------------------------------------------------------------------------

FRAME_N = 10


def _profile(peaks: dict[int, float]) -> torch.Tensor:
    """A received-attention profile over 10 keys: `peaks` at their positions, the rest spread
    evenly. Every row of the map is this profile, so r = the profile exactly."""
    rest = (1.0 - sum(peaks.values())) / (FRAME_N - len(peaks))
    p = torch.full((FRAME_N,), rest, dtype=torch.float64)
    for pos, v in peaks.items():
        p[pos] = v
    return p


# head 0 (B): refs at 4 and 5, 0.4 vs 0.3: distributed at dominance 2, centralized at 1.3
# head 1 (A): one key at 0.2: a reference at threshold 0.1, none at 0.25
# head 2 (C): 0.6 at the start, 0.28 at the end: centralized at balance 0.5, bidirectional at 0.3
# head 3 (D): 0.35 at 0, 0.3 at 7: bidirectional only when the edge is 3 positions (edge_frac 0.3)
PROFILES = [{4: 0.4, 5: 0.3}, {0: 0.2}, {0: 0.6, 9: 0.28}, {0: 0.35, 7: 0.3}]
KNOBS = dict(
    ref_threshold=0.25,
    central_dominance=1.3,
    bidir_balance=0.3,
    edge_frac=0.3,
    ref_cap_frac=0.1,
    top_column_frac=0.3,
)
C = frames.FRAME_CODE


def _frame_probe() -> ProbeOutput:
    rows = torch.stack([_profile(p) for p in PROFILES]).float()  # [H, n]
    pattern = rows[None, :, None, :].expand(2, len(PROFILES), FRAME_N, FRAME_N).clone()
    return probe_from_maps([pattern])


@pytest.mark.parametrize(
    ("knobs", "codes", "counts"),
    [
        (
            {},
            [C["distributed"], C["centralized"], C["centralized"], C["distributed"]],
            [2, 1, 2, 2],
        ),
        (
            KNOBS,
            [C["centralized"], C["none"], C["bidirectional"], C["bidirectional"]],
            [1, 1, 1, 1],
        ),
    ],
)
def test_frame_knobs_reach_the_classification(knobs, codes, counts):
    """Hand-derived classes and reference counts per head under the default thresholds and
    under non-default ones (ref_cap_frac 0.1 caps the count at 1 of 10 keys)."""
    probe = _frame_probe()
    df = measure(probe, cfg=only("frames", **knobs))
    got = per_head(df, names.FRAME_CLASS)
    assert [got[h] for h in range(4)] == codes
    count = per_head(df, "frames/ref_count")
    assert [count[h] for h in range(4)] == counts
    # the head-averaged map (head -1) and the model row: position 0 holds 0.297 of r, the
    # rest at most 0.137, so one reference at 0.25 (centralized) and r1 >= 2 r2 at 0.1 too
    assert one(df, names.FRAME_CLASS) == C["centralized"]
    assert one(df, names.FRAME_CLASS, layer=-1) == C["centralized"]


def test_top_column_frac_reaches_the_column_mass():
    """top_column_frac 0.3 of 10 keys = the top 3 columns: head 1 holds 0.2 + 2 x 0.8/9."""
    probe = _frame_probe()
    default = per_head(measure(probe, cfg=only("frames")), "frames/top_column_mass")
    wide = per_head(measure(probe, cfg=only("frames", **KNOBS)), "frames/top_column_mass")
    assert default[1] == pytest.approx(0.2, rel=1e-5)
    assert wide[1] == pytest.approx(0.2 + 2 * 0.8 / 9, rel=1e-5)
    assert wide[0] == pytest.approx(0.4 + 0.3 + 0.3 / 8, rel=1e-5)


def test_reference_ranks_logged_up_to_max_ref_logged_even_with_one_head():
    """One head (H + 1 = 2 maps) and three references at 2, 5, 8: all three get rank rows
    (max_ref_logged 4 bounds them, not the number of maps)."""
    p = _profile({2: 0.32, 5: 0.30, 8: 0.28}).float()
    pattern = p[None, None, None, :].expand(2, 1, FRAME_N, FRAME_N).clone()
    df = measure(probe_from_maps([pattern]), cfg=only("frames"))
    for head in (0, -1):
        pos = [one(df, f"frames/ref_position/rank_{i}", head=head) for i in range(3)]
        mass = [one(df, f"frames/ref_mass/rank_{i}", head=head) for i in range(3)]
        assert pos == [2.0, 5.0, 8.0]
        assert mass == pytest.approx([0.32, 0.30, 0.28], rel=1e-5)
    assert not df.metric.str.endswith("rank_3").any()


# -- massive activations -----------------------------------------------------------------------


def _massive_probe() -> ProbeOutput:
    resid = torch.full((2, 4, 8), 0.1)
    resid[:, 0, 0] = 50.0
    keys = torch.ones(2, 2, 4, 3)
    keys[:, 0, 0] = 3.0  # head 0: |k_0| = 3 |k_t|; head 1: 1
    cache = {"blocks.0.resid_post": resid, "blocks.0.attn.k": keys}
    return ProbeOutput(logits=torch.zeros(2, 1, 1), cache=cache, n_layers=1)


@pytest.mark.parametrize(
    ("knobs", "count"),
    [({}, 0.0), ({"massive_abs": 40.0, "massive_rel": 100.0}, 1.0), ({"massive_abs": 40.0}, 0.0)],
)
def test_massive_thresholds_reach_sun_count(knobs, count):
    """|a| = 50 over a median of 0.1: above 40 and >= 100 x median, but not above 100 (the
    default) nor >= 1000 x median (the default relative rule)."""
    probe = _massive_probe()
    df = measure(probe, cfg=only("massive", **knobs))
    assert one(df, names.SUN_COUNT) == count
    cfg = MetricsConfig(**knobs)
    direct = activations.residual_extremes(
        probe["blocks.0.resid_post"], cfg.top_values, cfg.massive_abs, cfg.massive_rel
    )
    assert direct[names.SUN_COUNT] == count


def test_key_norm_ratio_has_layer_and_model_means():
    df = measure(_massive_probe(), cfg=only("massive"))
    assert per_head(df, "massive/norm_ratio/key") == pytest.approx({0: 3.0, 1: 1.0})
    assert one(df, "massive/norm_ratio/key") == pytest.approx(2.0)
    assert one(df, "massive/norm_ratio/key", layer=-1) == pytest.approx(2.0)


def test_layer_without_attention_gets_its_other_metrics_and_no_intervention():
    """A probe that kept the residual stream but no attention pattern: the massive and
    BOS-residual rows are there; sinks, frames, dormancy labels and the intervention (which
    needs them) are skipped rather than failing."""
    probe = _massive_probe()
    ids = torch.tensor([[0, 5, 6, 7], [1, 5, 6, 7]])  # OracleModel reads the window from token 0
    model = OracleModel(helps=torch.zeros(2, 4))
    cfg = MetricsConfig(intervention=True, outliers=False)
    df = measure(probe, model=model, cfg=cfg, bos_present=True, input_ids=ids)
    assert one(df, names.SUN_COUNT) == 0.0
    assert one(df, names.BOS_RESID_NORM) == pytest.approx(math.sqrt(50.0**2 + 7 * 0.1**2))
    assert not df.metric.str.startswith(("sink/alpha", "frames/", "dormancy/delta")).any()
    assert not df.metric.str.contains("dormant_frac").any()


# -- BOS residual norm, spikes -----------------------------------------------------------------


def test_bos_residual_norm_is_the_window_mean_of_token_0s_norm():
    """Window 0's token 0 is (3, 4) (norm 5), window 1's (6, 8) (norm 10): mean 7.5; the
    later tokens (1, 0) must not enter."""
    resid = torch.tensor([[1.0, 0.0]]).repeat(2, 3, 1)
    resid[0, 0] = torch.tensor([3.0, 4.0])
    resid[1, 0] = torch.tensor([6.0, 8.0])
    probe = ProbeOutput(
        logits=torch.zeros(2, 1, 1), cache={"blocks.0.resid_post": resid}, n_layers=1
    )
    df = measure(probe, cfg=only("dormancy"), bos_present=True)
    assert one(df, names.BOS_RESID_NORM) == pytest.approx(7.5)
    assert one(df, names.RESID_PEAK) == pytest.approx(7.5)


def _spike_probe() -> tuple[ProbeOutput, OracleModel]:
    torch.manual_seed(0)
    model = OracleModel(helps=torch.zeros(2, 4))
    resid = torch.randn(2, 4, 8)
    resid[:, 1, 5] = 40.0
    probe = ProbeOutput(
        logits=torch.zeros(2, 1, 1), cache={"blocks.0.resid_post": resid}, n_layers=1
    )
    return probe, model


def test_one_spike_channel_gets_its_anatomy_and_zero_channels_none():
    probe, model = _spike_probe()
    df = measure(probe, model=model, cfg=only("spikes", spike_channels=1))
    mlp = model.blocks[0].mlp
    with torch.no_grad():
        want = activations.spike_anatomy(
            mlp.w_gate.weight, mlp.w_up.weight, mlp.w_down.weight, torch.tensor([5])
        )
    assert want
    for metric, value in want.items():
        assert one(df, metric) == pytest.approx(float(value), rel=1e-6, nan_ok=True), metric
    off = measure(probe, model=model, cfg=only("spikes", spike_channels=0))
    assert not off.metric.str.startswith("spike/").any()


def test_a_model_without_a_sinklab_config_skips_the_spike_anatomy():
    """A wrapped or foreign model (no `cfg`, or a `cfg` without `mlp`) has no known GLU MLP:
    the spike group is skipped instead of raising."""
    probe, _ = _spike_probe()
    for model in (torch.nn.Linear(2, 2), _with_cfg(torch.nn.Linear(2, 2))):
        df = measure(probe, model=model, cfg=only("spikes", "massive"))
        assert not df.metric.str.startswith("spike/").any()
        assert (df.metric == names.SUN_COUNT).any()


def _with_cfg(module: torch.nn.Module) -> torch.nn.Module:
    module.cfg = dataclasses.make_dataclass("Cfg", [])()
    return module


# -- outliers ----------------------------------------------------------------------------------


def test_outlier_knobs_and_model_reach_the_outlier_rows():
    """A tiny model's probe with a residual stream whose outlier tokens are known: value 10
    over a median token maximum of 1 at (window, position) (0, 2), (1, 2), (1, 4), (2, 4),
    (2, 1). eta 5 finds them (64 does not); top 1 keeps rank 0 only, position 2 (tied with 4
    at two windows, the smaller wins). The model makes the norm-output site qkv_in."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=11, d_model=16, n_layers=1, n_heads=2))
    ids = torch.randint(0, 11, (3, 6))
    probe = capture(model, ids)
    resid = torch.ones(3, 6, 16)
    for n, t in ((0, 2), (1, 2), (1, 4), (2, 4), (2, 1)):
        resid[n, t, 3] = 10.0
    probe.cache["blocks.0.resid_post"] = resid
    df = measure(
        probe, model=model, input_ids=ids, cfg=only("outliers", outlier_eta=5.0, outlier_top=1)
    )
    assert one(df, "outliers/resid_post/n_outlier_tokens") == pytest.approx(5 / 3)
    assert one(df, "outliers/resid_post/position/rank_0") == 2.0
    assert one(df, "outliers/resid_post/position_share/rank_0") == pytest.approx(2 / 3)
    assert not df.metric.str.endswith("rank_1").any()
    assert df.metric.str.startswith("outliers/qkv_in/").any()
    direct = outliers.outlier_rows(probe, model=model, input_ids=ids, eta=5.0, top=1)
    got = df[df.metric.str.startswith("outliers/")]
    by_key = {(r.layer, r.head, r.metric): r.value for r in got.itertuples()}
    assert by_key == pytest.approx({(lay, h, m): v for lay, h, m, v in direct}, nan_ok=True)


# -- the dormancy intervention -----------------------------------------------------------------

IN, IT = 6, 8


def _trigger_probe() -> tuple[ProbeOutput, torch.Tensor, torch.Tensor]:
    """Triggers at positions 3 and 5 of every window; head 0 parks 0.9 on BOS elsewhere and
    0.05 at triggers, head 1 always 0.1."""
    mask = torch.zeros(IN, IT, dtype=torch.bool)
    mask[:, 3] = mask[:, 5] = True
    bos = torch.where(mask, 0.05, 0.9)[:, None, :].expand(IN, 2, IT).clone()
    bos[:, 1] = 0.1
    pattern = torch.zeros(IN, 2, IT, IT)
    for t in range(1, IT):
        pattern[..., t, 1 : t + 1] = ((1 - bos[..., t]) / t)[..., None]
    pattern[..., :, 0] = bos
    pattern[..., 0, 0] = 1.0
    ids = torch.randint(0, 8, (IN, IT), generator=torch.Generator().manual_seed(0))
    ids[:, 0] = torch.arange(IN)
    return probe_from_maps([pattern]), mask, ids


class _CountingOracle(OracleModel):
    """Records how many windows each forward gets."""

    def __init__(self, helps: torch.Tensor) -> None:
        super().__init__(helps=helps, vocab=8)
        self.batches: list[int] = []

    def forward_probe(self, input_ids, *, names=None, edits=None):
        self.batches.append(int(input_ids.shape[0]))
        return super().forward_probe(input_ids, names=names, edits=edits)


def test_intervention_gets_the_loss_mask_and_the_batch_size():
    """Head 0 helps only at triggers. Scoring only the non-trigger predictions (loss_mask),
    zeroing it where active costs nothing and the base loss is log 8; unmasked it costs."""
    probe, mask, ids = _trigger_probe()
    model = _CountingOracle(helps=mask)
    cfg = MetricsConfig(intervention=True, intervention_batch_size=4, outliers=False)
    masked = measure(probe, model=model, cfg=cfg, trigger_mask=mask, input_ids=ids, loss_mask=~mask)
    assert one(masked, "dormancy/base_loss", layer=-1) == pytest.approx(math.log(8))
    assert one(masked, "dormancy/delta_loss_active", head=0) == pytest.approx(0.0, abs=1e-9)
    assert set(model.batches) == {4, 2}  # 6 windows in batches of 4
    full = measure(probe, model=model, cfg=cfg, trigger_mask=mask, input_ids=ids)
    assert one(full, "dormancy/delta_loss_active", head=0) > 0.5
    # the intervention rows are appended under a fresh 0..n-1 index
    assert masked.index.equals(pd.RangeIndex(len(masked)))
