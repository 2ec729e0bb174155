"""Which query positions the streaming numbers rest on (issue 31 item 5, issue 32).

A measurement's oracle runs at every position by default, so its perplexities and ratios all
use the same T - 1 - C positions; a strided oracle (the training probe's) leaves NaN gaps,
and the per-position buckets with no finite value are left out, never filled.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sinklab.analysis.streaming import (
    ProbeStreamConfig,
    StreamConfig,
    bucket_means,
    recompute_nll,
    stream_eval,
    stream_nll,
)
from sinklab.errors import ConfigError
from sinklab.reanalysis.config import from_mapping
from sinklab.reanalysis.runner import stream_config
from tests.analysis.analysis_builders import STREAM_C as C
from tests.analysis.analysis_builders import STREAM_T as T
from tests.analysis.analysis_builders import stream_ids as _ids
from tests.analysis.analysis_builders import stream_model as _model


@torch.no_grad()
def _brute_force_oracle(model, ids: torch.Tensor, cache_len: int) -> torch.Tensor:
    """Each prediction from a fresh forward on its own last `cache_len` tokens, one by one."""
    nll = []
    for t in range(len(ids) - 1):
        context = ids[max(0, t - cache_len + 1) : t + 1]
        logits = model(context[None])[0, -1].float()
        nll.append(F.cross_entropy(logits[None], ids[t + 1 : t + 2]))
    return torch.stack(nll)


def test_a_measurement_runs_the_oracle_at_every_position_and_the_probe_sparsely() -> None:
    assert StreamConfig().recompute_stride == 1
    assert ProbeStreamConfig().recompute_stride == 64
    pretrained = stream_config(None, from_mapping({"target": "smollm2"}), window=64)
    assert pretrained is not None and pretrained.recompute_stride == 1


@pytest.mark.parametrize("kw", [dict(pos="rope"), dict(pos="alibi", attention="sink_logit")])
def test_the_default_oracle_equals_a_brute_force_re_encode_at_every_position(kw: dict) -> None:
    model, ids = _model(**kw), _ids()
    cfg = StreamConfig(stream_len=T, cache_len=C, conditions=("recompute",))
    got = stream_nll(model, ids, cfg).nll["recompute"]
    assert int(got.isfinite().sum()) == T - 1  # every position, none skipped
    torch.testing.assert_close(got, _brute_force_oracle(model, ids, C), rtol=0, atol=1e-5)


def test_every_perplexity_and_ratio_rests_on_the_same_positions_at_stride_1() -> None:
    model, ids = _model(), _ids()
    cfg = StreamConfig(stream_len=T, cache_len=C, sink_counts=(1, 2))
    result = stream_nll(model, ids, cfg)
    counts = {name: int(nll[C:].isfinite().sum()) for name, nll in result.nll.items()}
    assert set(counts.values()) == {T - 1 - C} and len(counts) == 8
    df = stream_eval(model, ids, cfg)
    value = dict(zip(df["metric"], df["value"], strict=True))
    oracle = result.nll["recompute"][C:].double()
    assert value["stream/ppl/recompute"] == pytest.approx(math.exp(float(oracle.mean())))
    for name, nll in result.nll.items():
        if name == "recompute":
            continue
        # the ratio's terms are the two plain perplexities: no position dropped from either
        ppl = math.exp(float(nll[C:].double().mean()))
        assert value[f"stream/ppl/{name}"] == pytest.approx(ppl, rel=1e-6)
        expected = ppl / value["stream/ppl/recompute"]
        assert value[f"stream/ratio/{name}"] == pytest.approx(expected, rel=1e-6), name


def test_oracle_offsets_together_give_the_stride_1_oracle() -> None:
    model, ids = _model(), _ids()
    with torch.no_grad():
        full = recompute_nll(model, ids, C)
        parts = [recompute_nll(model, ids, C, batch_size=2, stride=3, offset=o) for o in range(3)]
    for o, part in enumerate(parts):
        ran = torch.zeros(T - 1, dtype=torch.bool)
        ran[: C - 1] = True
        ran[C - 1 + o :: 3] = True
        assert torch.equal(part.isfinite(), ran), o
    merged = torch.stack(parts).nanmean(dim=0)
    torch.testing.assert_close(merged, full, rtol=0, atol=1e-6)


@pytest.mark.parametrize("offset", [-1, 3])
def test_an_offset_outside_the_stride_is_a_one_line_error(offset: int) -> None:
    with pytest.raises(ConfigError) as err:
        recompute_nll(_model(), _ids(), C, stride=3, offset=offset)
    assert str(err.value) == f"offset: must be in 0 .. stride-1=2, got {offset}"


# -- NaN gaps in the per-position buckets (issue 32) -----------------------------------------


def test_a_bucket_with_no_finite_position_is_left_out_and_its_neighbours_keep_their_means():
    nan = float("nan")
    nll = torch.tensor([1.0, 2.0, 3.0, 4.0, nan, nan, nan, nan, 5.0, nan, 7.0, nan, 9.0])
    starts, means = bucket_means(nll, 4)
    assert starts == [0, 8, 12]  # the all-NaN bucket at 4 has no entry
    assert not any(math.isnan(m) for m in means)
    assert means == [2.5, 6.0, 9.0]  # NaN skipped inside a bucket, never counted as 0


def test_the_stream_rows_skip_the_strided_oracles_empty_buckets() -> None:
    model, ids = _model(), _ids()
    cfg = StreamConfig(
        stream_len=T, cache_len=C, conditions=("window", "recompute"), recompute_stride=3
    )
    cfg = StreamConfig(**{**cfg.to_dict(), "shift_modes": ["shift"], "bucket_len": 2})
    oracle = stream_nll(model, ids, cfg).nll["recompute"]  # finite at t < 7 and 7, 10, ..., 22
    df = stream_eval(model, ids, cfg)
    value = dict(zip(df["metric"], df["value"], strict=True))
    assert not any(math.isnan(v) for v in value.values())
    got = sorted(int(m.rsplit("_", 1)[1]) for m in value if m.startswith("stream/nll/recompute/"))
    assert got == [0, 2, 4, 6, 10, 12, 16, 18, 22]  # 8, 14 and 20 hold no oracle position
    assert math.isnan(oracle[8]) and math.isnan(oracle[9])
    assert value["stream/nll/recompute/at_6"] == pytest.approx((oracle[6] + oracle[7]) / 2)
    assert value["stream/nll/recompute/at_10"] == pytest.approx(float(oracle[10]))
    assert value["stream/nll/recompute/at_22"] == pytest.approx(float(oracle[22]))
    window = [m for m in value if m.startswith("stream/nll/window_shift/")]
    assert len(window) == 12  # the window has every position: every bucket, none left out
