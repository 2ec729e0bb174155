"""Interventions with known answers: the sink removed, checked against an independent masked
softmax (and sigmoid) computed from the model's own q, k, v; a planted massive activation
zeroed and mean-set, checked against the LM head applied by hand; the rows, their cost in
forwards, and the config."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from sinklab.analysis.activations import residual_extremes
from sinklab.analysis.capture import capture
from sinklab.analysis.interventions import (
    InterventionConfig,
    find_massive,
    intervention_rows,
    massive_mask,
    next_token_nll,
    no_sink,
)
from sinklab.analysis.registry import template_of
from sinklab.data.probe_set import ProbeSet
from sinklab.errors import ConfigError
from sinklab.model import build_model
from sinklab.model.probe import ProbeOutput
from tests.analysis.analysis_builders import probe_from_maps
from tests.model.helpers import tiny

N, T = 3, 8


def _model(**overrides):
    torch.manual_seed(0)
    return build_model(tiny(**{"init_std": 0.05, **overrides})).eval()


def _ids(vocab: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(2, vocab, (N, T), generator=torch.Generator().manual_seed(seed))


def _probe_set(ids: torch.Tensor) -> ProbeSet:
    return ProbeSet(input_ids=ids, text=[""] * ids.shape[0])


def _value(df, metric: str, layer: int) -> float:
    return df[(df.metric == metric) & (df.layer == layer)].value.item()


def _ppl(logits: torch.Tensor, ids: torch.Tensor) -> float:
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    return math.exp(float(ce))


# -- no_sink against an independent implementation ------------------------------------------------


def _qkv(model, ids, edits=None):
    with torch.no_grad():
        return model.forward_probe(ids, names=["blocks.0.attn"], edits=edits)


@pytest.mark.parametrize("attention", ["softmax", "softmax_off_by_one"])
def test_no_sink_equals_a_softmax_with_key_0_masked(attention: str) -> None:
    model = _model(n_layers=1, n_kv_heads=4, attention=attention)
    ids = _ids()
    slots = len(model.extra_slots)
    out = _qkv(model, ids, {"blocks.0.attn.pattern": no_sink(slots, normalised=True)})
    q, k, v = (out[f"blocks.0.attn.{x}"] for x in "qkv")
    scores = (q @ k.transpose(-2, -1)) * model.blocks[0].attn.scale
    hidden = torch.ones(T, T).triu(1).bool()
    hidden_0 = hidden.clone()
    hidden_0[1:, 0] = True  # every query but query 0 loses key 0
    if slots:  # softmax_off_by_one: a zero key with a zero value and logit 0
        scores = torch.cat([torch.zeros(N, 4, T, 1), scores], -1)
        hidden_0 = torch.cat([torch.zeros(T, 1, dtype=torch.bool), hidden_0], -1)
        hidden_0[0, 1] = True  # query 0 has the slot left, so it loses key 0 too
        v = torch.cat([torch.zeros(N, 4, 1, v.shape[-1]), v], 2)
    want = torch.softmax(scores.masked_fill(hidden_0, float("-inf")), -1) @ v
    torch.testing.assert_close(out["blocks.0.attn.z"], want, rtol=1e-5, atol=1e-6)
    if slots:  # query 0 attends only to the zero-valued slot: its output vanishes
        assert out["blocks.0.attn.z"][:, :, 0].abs().max() < 1e-6
    else:  # query 0 keeps its row: it sees only itself
        torch.testing.assert_close(out["blocks.0.attn.z"][:, :, 0], v[:, :, 0])
    assert (out["blocks.0.attn.pattern"][..., 1:, slots] == 0).all()


def test_no_sink_on_sigmoid_attention_only_zeroes_key_0() -> None:
    model = _model(n_layers=1, n_kv_heads=4, attention="sigmoid")
    ids = _ids()
    out = _qkv(model, ids, {"blocks.0.attn.pattern": no_sink(0, normalised=False)})
    q, k, v = (out[f"blocks.0.attn.{x}"] for x in "qkv")
    weights = torch.sigmoid(q @ k.transpose(-2, -1) * model.blocks[0].attn.scale)
    weights = weights * torch.ones(T, T).tril()
    weights[..., 0] = 0.0  # no renormalisation; query 0 attends to nothing
    torch.testing.assert_close(out["blocks.0.attn.z"], weights @ v, rtol=1e-5, atol=1e-6)
    assert (out["blocks.0.attn.z"][:, :, 0] == 0).all()


def test_no_sink_rows_give_the_edited_models_perplexity() -> None:
    """A 1-layer model: the layer-0 row and the all-layers row are the same forward; both
    equal the perplexity of a by-hand run with the edit, and `none` is the probe's own."""
    model = _model(n_layers=1)
    ids = _ids()
    probe = capture(model, ids, batch_size=2)
    cfg = InterventionConfig(enabled=True, kinds=("no_sink",))
    df = intervention_rows(model, _probe_set(ids), probe, cfg, batch_size=2, device="cpu")
    with torch.no_grad():
        edited = model.forward_probe(ids, edits={"blocks.0.attn.pattern": no_sink(0, True)})
    base, ppl = _ppl(model(ids).detach(), ids), _ppl(edited.logits, ids)
    assert _value(df, "intervention/none/ppl", -1) == pytest.approx(base, rel=1e-6)
    for layer in (0, -1):
        assert _value(df, "intervention/no_sink/ppl", layer) == pytest.approx(ppl, rel=1e-5)
        assert _value(df, "intervention/no_sink/ppl_ratio", layer) == pytest.approx(
            ppl / base, rel=1e-5
        )
    assert set(df["head"]) == {-1}
    assert all(template_of(m) for m in df.metric)


# -- massive activations --------------------------------------------------------------------------


def test_massive_mask_counts_what_sun_count_counts() -> None:
    h = torch.randn(4, 6, 10, generator=torch.Generator().manual_seed(2))
    h[:, 0, 3] = 4000.0
    h[1, 2, 7] = -900.0  # over 100 and over 1000 x median in that window
    h[2, 4, 1] = 90.0  # under 100: not massive
    mask = massive_mask(h, 100.0, 1000.0)
    assert int(mask.sum()) == 5
    sun = residual_extremes(h)["massive/sun_count"]
    assert float(mask.sum()) / 4 == pytest.approx(float(sun))


def test_the_edit_layer_is_where_half_the_largest_count_is_first_reached() -> None:
    """Layer 0 has a stray precursor in one window; layers 1 and 2 have the massive value in
    every window: layer 1 is chosen, and each (position, channel) has its own mean."""
    g = torch.Generator().manual_seed(0)
    resid = [torch.randn(4, 6, 10, generator=g) for _ in range(3)]
    resid[0][0, 0, 3] = 5000.0
    for layer in (1, 2):
        resid[layer][:, 0, 3] = torch.tensor([1000.0, 2000.0, 3000.0, 4000.0])
    resid[1][2, 5, 8] = -7000.0
    resid[1][3, 4, 3] = 6000.0  # the same channel at another position: its own mean
    cache = {f"blocks.{i}.resid_post": h for i, h in enumerate(resid)}
    probe = probe_from_maps([torch.eye(6)] * 3, cache=cache)
    found = find_massive(probe)
    assert found is not None and found.layer == 1
    assert int(found.mask.sum()) == 6
    assert found.means[0, 3].item() == pytest.approx(2500.0)
    assert found.means[4, 3].item() == pytest.approx(6000.0)
    assert found.means[5, 8].item() == pytest.approx(-7000.0)
    assert int((found.means != 0).sum()) == 3
    assert (
        find_massive(probe_from_maps([torch.eye(6)], cache={"blocks.0.resid_post": resid[0][1:]}))
        is None
    )


def _planted(values: dict[int, float]):
    """A 1-layer model whose embeddings of tokens 0 and 1 carry a massive value in channel 5;
    each window starts with one of them (untied, so the LM head does not see the value)."""
    model = _model(n_layers=1, tie_embeddings=False)
    with torch.no_grad():
        for token, value in values.items():
            model.tok_emb.weight[token, 5] = value
    ids = _ids()
    ids[:, 0] = torch.tensor([0, 1, 0])
    return model, ids


def test_massive_zero_and_mean_on_a_planted_massive_activation() -> None:
    """The last block's output feeds only norm_final and the LM head, so the edited logits
    are computed by hand from the probe's resid_post."""
    model, ids = _planted({0: 3000.0, 1: 6000.0})
    probe = capture(model, ids, batch_size=2)
    h = probe["blocks.0.resid_post"]
    found = find_massive(probe)
    assert found is not None and found.layer == 0
    assert found.mask.nonzero().tolist() == [[0, 0, 5], [1, 0, 5], [2, 0, 5]]
    cfg = InterventionConfig(enabled=True, kinds=("massive_zero", "massive_mean"))
    df = intervention_rows(model, _probe_set(ids), probe, cfg, batch_size=2, device="cpu")
    base = _ppl(probe.logits, ids)
    zeroed, meaned = h.clone(), h.clone()
    zeroed[:, 0, 5] = 0.0
    meaned[:, 0, 5] = h[:, 0, 5].mean()
    with torch.no_grad():
        ppl_zero = _ppl(model.lm_head(model.norm_final(zeroed)), ids)
        ppl_mean = _ppl(model.lm_head(model.norm_final(meaned)), ids)
    assert _value(df, "intervention/massive/n_entries", 0) == 3
    assert _value(df, "intervention/massive_zero/ppl", 0) == pytest.approx(ppl_zero, rel=1e-5)
    assert _value(df, "intervention/massive_mean/ppl", 0) == pytest.approx(ppl_mean, rel=1e-5)
    assert _value(df, "intervention/massive_zero/ppl_ratio", 0) == pytest.approx(
        ppl_zero / base, rel=1e-5
    )
    assert abs(ppl_zero - base) > 1e-3 and abs(ppl_mean - ppl_zero) > 1e-3


class _Counting(torch.nn.Module):
    """Wraps a model; counts forward_probe calls (and refuses them when `refuse`)."""

    def __init__(self, model, refuse: bool = False) -> None:
        super().__init__()
        self.model, self.refuse, self.calls = model, refuse, 0

    def forward_probe(self, ids, *, names=None, edits=None) -> ProbeOutput:
        if self.refuse:
            raise AssertionError("no forward expected")
        self.calls += 1
        return self.model.forward_probe(ids, names=names, edits=edits)


def test_without_massive_activations_the_rows_say_so_without_a_forward() -> None:
    model = _model()
    ids = _ids()
    probe = capture(model, ids)
    cfg = InterventionConfig(enabled=True, kinds=("massive_zero", "massive_mean"))
    df = intervention_rows(_Counting(model, refuse=True), _probe_set(ids), probe, cfg, batch_size=5)
    assert _value(df, "intervention/massive/n_entries", -1) == 0
    for kind in ("massive_zero", "massive_mean"):
        assert _value(df, f"intervention/{kind}/ppl_ratio", -1) == 1.0
        assert _value(df, f"intervention/{kind}/ppl", -1) == _value(df, "intervention/none/ppl", -1)


def test_each_intervention_costs_one_forward_over_the_probe_set() -> None:
    model, ids = _planted({0: 3000.0, 1: 6000.0})
    model = _model(n_layers=2, tie_embeddings=False)
    with torch.no_grad():
        model.tok_emb.weight[0, 5] = 5000.0
    ids[:, 0] = 0
    probe = capture(model, ids)
    counting = _Counting(model)
    df = intervention_rows(
        counting, _probe_set(ids), probe, InterventionConfig(enabled=True), batch_size=2
    )
    chunks = 2  # 3 windows in batches of 2
    assert counting.calls == chunks * (2 + 2 + 1)  # zero, mean, no_sink per layer, all layers
    assert sorted(df[df.metric == "intervention/no_sink/ppl"].layer) == [-1, 0, 1]
    assert not df.duplicated(["layer", "head", "metric"]).any()


def test_an_encoder_gets_no_rows() -> None:
    model = _model(causal=False)
    ids = _ids()
    probe = capture(model, ids)
    df = intervention_rows(model, _probe_set(ids), probe, InterventionConfig(), batch_size=5)
    assert df.empty and list(df.columns) == ["layer", "head", "metric", "value"]


def test_next_token_nll_by_hand() -> None:
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = math.log(3.0)  # p(2) = 3/6 at position 0
    total, count = next_token_nll(logits, torch.tensor([[1, 2, 0]]))
    assert count == 2
    assert total == pytest.approx(math.log(2.0) + math.log(4.0))


# -- the config ---------------------------------------------------------------------------------------


def test_due_follows_the_quant_schedule() -> None:
    cfg = InterventionConfig(from_step=256)
    due = [s for s in range(0, 1201) if cfg.due(s, 1200, 1024, 200)]
    assert due == [0, 256, 512, 1024, 1200]


def test_config_errors_name_the_key_and_the_allowed_values() -> None:
    with pytest.raises(ConfigError, match=re.escape("callbacks.probe.interventions.kinds")) as err:
        InterventionConfig(kinds=("massive_zero", "no_bos"))
    assert "no_sink" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="from_step"):
        InterventionConfig(from_step=-1)
    with pytest.raises(ConfigError, match=re.escape("callbacks.probe.interventions")):
        InterventionConfig.from_dict({"enabled": True, "kind": ["no_sink"]})
    assert InterventionConfig.from_dict({"kinds": ["no_sink"]}).kinds == ("no_sink",)


def test_every_intervention_metric_is_registered_and_emitted() -> None:
    from sinklab.analysis.registry import METRICS

    model, ids = _planted({0: 3000.0, 1: 6000.0})
    probe = capture(model, ids)
    df = intervention_rows(model, _probe_set(ids), probe, InterventionConfig(), batch_size=5)
    emitted = {template_of(m) for m in df.metric}
    assert None not in emitted
    assert emitted == {t for t in METRICS if t.startswith("intervention/")}


# -- the wiring ----------------------------------------------------------------------------------------


def test_the_probe_pass_runs_the_interventions_after_the_measure_rows() -> None:
    from sinklab.analysis.config import MetricsConfig
    from sinklab.analysis.probe_pass import (
        intervention_evaluation,
        on_schedule,
        pass_scalars,
        run_probe_pass,
    )

    model = _model()
    ids = _ids()
    mcfg = MetricsConfig()
    icfg = InterventionConfig(enabled=True, kinds=("no_sink",))
    ev = intervention_evaluation(icfg, mcfg, on_schedule(icfg, 1200, 512, 500))
    result = run_probe_pass(model, _probe_set(ids), mcfg, [ev], step=0, batch_size=2)
    family = result.rows.metric.str.startswith("intervention/")
    first = int(family.to_numpy().argmax())
    assert family.any() and family[first:].all()  # the measure rows come first
    assert set(result.seconds) == {"intervention"}
    direct = intervention_rows(model, _probe_set(ids), result.probe, icfg, batch_size=2)
    pd_rows = result.rows[family].reset_index(drop=True)[["layer", "head", "metric", "value"]]
    assert pd_rows.to_numpy().tolist() == direct.to_numpy().tolist()
    scalars = pass_scalars(result.rows, [ev])
    assert (
        "intervention/no_sink/ppl_ratio/layer_1" in scalars and "intervention/none/ppl" in scalars
    )
    skipped = run_probe_pass(model, _probe_set(ids), mcfg, [ev], step=100, batch_size=2)
    assert skipped.seconds == {}  # not due: 100 is no power of two


def test_analyze_runs_them_when_asked_or_as_the_run_did() -> None:
    from sinklab.reanalysis import from_mapping
    from sinklab.reanalysis.runner import intervention_config

    def cfg(**values):  # noqa: ANN202
        return from_mapping({"target": "x", "progress": False, **values})

    ran = {"enabled": True, "from_step": 64, "kinds": ["no_sink"]}
    assert intervention_config(ran, cfg()) == InterventionConfig(True, 64, ("no_sink",))
    assert intervention_config({**ran, "enabled": False}, cfg()) is None
    assert intervention_config(None, cfg()) is None  # a pretrained model: only when asked
    assert intervention_config(None, cfg(groups=["interventions"])) == InterventionConfig(True)
    assert intervention_config(ran, cfg(groups=["sinks"])) is None
    asked = cfg(interventions={"enabled": True, "kinds": ["massive_zero"]})
    assert intervention_config(None, asked).kinds == ("massive_zero",)
    with pytest.raises(ConfigError, match=re.escape("interventions.kinds")):
        cfg(interventions={"kinds": ["zero_everything"]})


def test_analyze_a_pretrained_model_with_groups_interventions(tmp_path) -> None:
    """`sinklab-analyze target=hf:<folder> 'groups=[interventions]'`: the intervention rows
    alone, tagged with their own checkpoint string, the probe set saved beside them, and a
    second call finds them measured."""
    from sinklab.analysis.records import read_rows
    from sinklab.reanalysis import from_mapping, runner
    from tests.reanalysis.test_hf_target import TEXT, _tiny_llama_folder

    folder, corpus = tmp_path / "tiny-llama", tmp_path / "corpus.txt"
    _tiny_llama_folder(folder)
    corpus.write_text(TEXT)
    cfg = {"target": f"hf:{folder}", "corpus": str(corpus), "n_windows": 3, "seq_len": 16}
    cfg |= {"out_dir": str(tmp_path / "out"), "progress": False, "groups": ["interventions"]}
    (report,) = runner.analyze(from_mapping(cfg))
    rows = read_rows(report.table)
    assert rows.metric.str.startswith("intervention/").all()
    assert {"intervention/none/ppl", "intervention/no_sink/ppl_ratio"} <= set(rows.metric)
    assert rows.checkpoint.nunique() == 1 and "interventions [" in rows.checkpoint.iloc[0]
    assert (tmp_path / "out" / "probe" / "probe_set.npz").is_file()
    (again,) = runner.analyze(from_mapping(cfg))
    assert again.skipped == [-1] and again.measured == []


def test_a_probe_captured_without_logits_scores_the_unedited_model_itself() -> None:
    """The probe pass keeps no logits (a 262k vocabulary would hold GBs of them); the rows
    are the same as from a capture that kept them."""
    model = _model(n_layers=2)
    ids = _ids()
    with_logits = capture(model, ids, batch_size=2)
    without = capture(model, ids, batch_size=2, keep_logits=False)
    assert without.logits.shape == (*ids.shape, 0)
    cfg = InterventionConfig(enabled=True, kinds=("no_sink",))
    a = intervention_rows(model, _probe_set(ids), with_logits, cfg, batch_size=2, device="cpu")
    b = intervention_rows(model, _probe_set(ids), without, cfg, batch_size=2, device="cpu")
    assert a.metric.tolist() == b.metric.tolist()
    assert b.value.tolist() == pytest.approx(a.value.tolist(), rel=1e-5)
    base = _ppl(model(ids).detach(), ids)
    assert _value(b, "intervention/none/ppl", -1) == pytest.approx(base, rel=1e-6)
