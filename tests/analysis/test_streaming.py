"""Streaming evaluation: config checks, the recompute oracle, and the tidy rows.

The one-pass cache conditions are proved against a rolling-KV decode in
tests/model/test_streaming_decode.py; here the oracle is checked against a plain loop of
`model.forward` over each query's own window.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from sinklab.analysis import streaming
from sinklab.analysis.registry import METRICS, describe, template_of
from sinklab.analysis.streaming import (
    StreamConfig,
    parse_condition,
    recompute_nll,
    stream_eval,
    stream_nll,
)
from sinklab.errors import ConfigError
from tests.analysis.analysis_builders import STREAM_C as C
from tests.analysis.analysis_builders import STREAM_T as T
from tests.analysis.analysis_builders import stream_ids as _ids
from tests.analysis.analysis_builders import stream_model as _model


def _cfg(**kw) -> StreamConfig:
    values = dict(stream_len=T, cache_len=C, sink_counts=(1, 2), recompute_stride=1)
    values.update(kw)
    return StreamConfig(**values)


@torch.no_grad()
def _loop_oracle(model, ids: torch.Tensor, cache_len: int) -> torch.Tensor:
    """NLL of each prediction from a fresh `model.forward` on its own last cache_len tokens."""
    out = []
    for t in range(len(ids) - 1):
        window = ids[max(0, t - cache_len + 1) : t + 1]
        logits = model(window[None])[0, -1].float()
        out.append(-F.log_softmax(logits, -1)[ids[t + 1]])
    return torch.stack(out)


# -- config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,key",
    [
        (dict(stream_len=16, cache_len=16), "stream.cache_len"),
        (dict(stream_len=16, cache_len=20), "stream.cache_len"),
        (dict(cache_len=8, sink_counts=(1, 8)), "stream.sink_counts"),
        (dict(cache_len=8, conditions=("sinks9_shift",)), "stream.conditions"),
        (dict(sink_counts=(0, 2)), "stream.sink_counts"),
        (dict(conditions=("dense", "windows")), "stream.conditions"),
        (dict(conditions=("dense_shift",)), "stream.conditions"),
        (dict(conditions=("sinks0",)), "stream.conditions"),
        (dict(shift_modes=("shifted",)), "stream.shift_modes"),
        (dict(recompute_stride=0), "stream.recompute_stride"),
        (dict(every_n_probes=0), "stream.every_n_probes"),
        (dict(bucket_len=0), "stream.bucket_len"),
    ],
)
def test_bad_config_is_a_one_line_error_naming_the_key(kwargs: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        StreamConfig(**kwargs)
    assert err.value.key == key
    assert "\n" not in str(err.value)


def test_from_dict_rejects_unknown_keys_and_takes_lists() -> None:
    with pytest.raises(ConfigError, match="stream.cache"):
        StreamConfig.from_dict({"cache": 4})
    cfg = StreamConfig.from_dict({"sink_counts": [4], "shift_modes": ["shift"]})
    assert cfg.sink_counts == (4,) and cfg.shift_modes == ("shift",)


def test_resolve_fills_lengths_from_the_training_window() -> None:
    cfg = StreamConfig().resolve(128)
    assert (cfg.stream_len, cfg.cache_len, cfg.bucket_len) == (2048, 64, 16)
    assert StreamConfig(cache_len=10).resolve(128).cache_len == 10
    with pytest.raises(ConfigError, match="stream.cache_len"):
        StreamConfig(stream_len=40).resolve(128)  # C = 64 is not shorter than T = 40


def test_conditions_expand_over_sink_counts_and_shift_modes() -> None:
    names = [c.name for c in StreamConfig(sink_counts=(1, 4)).condition_list()]
    assert names == [
        "dense",
        "window",
        "window_shift",
        "sinks1",
        "sinks1_shift",
        "sinks4",
        "sinks4_shift",
        "recompute",
    ]
    cfg = StreamConfig(conditions=("sinks", "sinks2_shift", "window"), shift_modes=("shift",))
    assert [c.name for c in cfg.condition_list()] == [
        "sinks1_shift",
        "sinks2_shift",
        "sinks4_shift",
        "sinks8_shift",
        "window_shift",
    ]
    cond = parse_condition("sinks12_shift")
    assert (cond.kind, cond.n_sinks, cond.shift) == ("cache", 12, True)
    assert parse_condition("window").n_sinks == 0


def test_bad_stream_input_is_a_config_error() -> None:
    model = _model()
    with pytest.raises(ConfigError, match="stream.stream_len"):
        stream_nll(model, _ids(n=C), _cfg(stream_len=None))
    with pytest.raises(ConfigError, match="stream.cache_len"):
        stream_nll(model, _ids(), StreamConfig())  # unresolved
    learned = _model(pos="learned", max_seq_len=6)
    with pytest.raises(ConfigError, match="stream.cache_len"):
        stream_nll(learned, _ids(), _cfg())


# -- the oracle -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        dict(pos="rope"),
        dict(pos="alibi", attention="sigmoid_norm"),
        dict(pos="learned", attention="gated"),
        dict(pos="sinusoidal", attention="sink_logit", n_sink_tokens=2),
        dict(pos="none", kv_bias=True, attention="sigmoid"),
    ],
)
def test_recompute_equals_a_fresh_forward_on_each_window(kw: dict) -> None:
    model, ids = _model(**kw), _ids()
    with torch.no_grad():
        got = recompute_nll(model, ids, C, batch_size=5)
    torch.testing.assert_close(got, _loop_oracle(model, ids, C), rtol=0, atol=1e-5)


def test_recompute_with_a_stride_runs_only_those_windows() -> None:
    model, ids = _model(), _ids()
    with torch.no_grad():
        full = recompute_nll(model, ids, C)
        strided = recompute_nll(model, ids, C, batch_size=2, stride=3)
    ran = torch.zeros(T - 1, dtype=torch.bool)
    ran[: C - 1] = True
    ran[C - 1 :: 3] = True
    assert torch.equal(strided.isfinite(), ran)
    torch.testing.assert_close(strided[ran], full[ran], rtol=0, atol=1e-6)


@pytest.mark.parametrize("cache_len", [T, T + 5])
def test_recompute_with_a_cache_as_long_as_the_stream_equals_dense(cache_len: int) -> None:
    model, ids = _model(), _ids()
    with torch.no_grad():
        got = recompute_nll(model, ids, cache_len)
        logits = model(ids[None])[0, :-1].float()
    dense = F.cross_entropy(logits, ids[1:], reduction="none")
    torch.testing.assert_close(got, dense, rtol=0, atol=1e-5)


# -- conditions and rows --------------------------------------------------------------------


def test_every_condition_equals_dense_until_the_cache_fills_and_differs_after() -> None:
    model = _model(pos="rope", attention="softmax")
    result = stream_nll(model, _ids(), _cfg())
    dense = result.nll["dense"]
    assert set(result.nll) == {c.name for c in _cfg().condition_list()}
    assert result.skipped == {}
    for name, nll in result.nll.items():
        assert nll.shape == (T - 1,)
        torch.testing.assert_close(nll[:C], dense[:C], rtol=0, atol=1e-5)
        if name != "dense":
            assert (nll[C:] - dense[C:]).abs().max() > 1e-3, name


def test_learned_positions_skip_the_conditions_that_keep_stream_positions() -> None:
    model = _model(pos="learned", max_seq_len=16)  # T = 24 > 16, C = 8 <= 16
    result = stream_nll(model, _ids(), _cfg())
    assert set(result.skipped) == {"dense", "window", "sinks1", "sinks2"}
    assert all("model.max_seq_len=16" in why for why in result.skipped.values())
    assert set(result.nll) == {"window_shift", "sinks1_shift", "sinks2_shift", "recompute"}


def test_sinusoidal_positions_extrapolate_past_max_seq_len() -> None:
    result = stream_nll(_model(pos="sinusoidal", max_seq_len=16), _ids(), _cfg())
    assert result.skipped == {} and bool(result.nll["dense"].isfinite().all())


def test_rows_are_tidy_registered_and_consistent_with_the_nll() -> None:
    model = _model(attention="sink_logit", n_sink_tokens=1)
    cfg = _cfg(bucket_len=5, recompute_stride=2)
    was_training = model.train().training
    df = stream_eval(model, _ids(), cfg)
    assert model.training == was_training
    assert list(df.columns) == ["layer", "head", "metric", "value"]
    assert df.layer.dtype == "int64" and df.value.dtype == "float64"
    assert (df.layer == -1).all() and (df["head"] == -1).all()
    assert not df.metric.duplicated().any()
    assert all(template_of(m) is not None and describe(m).endswith(".") for m in df.metric)
    stream_templates = {t for t in METRICS if t.startswith("stream/")}
    assert {template_of(m) for m in df.metric} == stream_templates

    value = dict(zip(df.metric, df.value, strict=True))
    result = stream_nll(model.eval(), _ids(), cfg)
    window, oracle = result.nll["window_shift"], result.nll["recompute"]
    assert value["stream/ppl/window_shift"] == pytest.approx(math.exp(window[C:].mean()))
    assert value["stream/ppl_all/window_shift"] == pytest.approx(math.exp(window.mean()))
    paired = oracle[C:].isfinite()
    assert 0 < int(paired.sum()) < T - 1 - C  # the stride left positions out
    expected = math.exp(window[C:][paired].mean() - oracle[C:][paired].mean())
    assert value["stream/ratio/window_shift"] == pytest.approx(expected, rel=1e-5)
    assert value["stream/nll/sinks2/at_10"] == pytest.approx(
        float(result.nll["sinks2"][10:15].mean())
    )
    assert value["stream/cache_len"] == C and value["stream/bucket_len"] == 5
    assert "stream/ratio/recompute" not in value


def test_no_ratio_rows_without_the_oracle() -> None:
    df = stream_eval(_model(), _ids(), _cfg(conditions=("window",), shift_modes=("shift",)))
    assert not df.metric.str.startswith("stream/ratio/").any()
    assert "stream/ppl/window_shift" in set(df.metric)


# -- the two paths --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        dict(pos="rope", attention="sink_logit", n_sink_tokens=1),
        dict(pos="alibi", kv_bias=True),
        dict(pos="learned", attention="relu", max_seq_len=16),
    ],
)
def test_masked_and_rolling_paths_give_the_same_rows(kw: dict) -> None:
    model = _model(**kw)
    cfg = _cfg(bucket_len=5, recompute_stride=2)
    masked = stream_eval(model, _ids(), cfg, path="masked")
    rolling = stream_eval(model, _ids(), cfg, path="rolling")
    assert list(masked.metric) == list(rolling.metric)
    assert masked.attrs["stream_skipped"] == rolling.attrs["stream_skipped"]
    nll = masked.metric.str.startswith("stream/nll/")
    torch.testing.assert_close(
        torch.tensor(rolling.value[nll].to_numpy()),
        torch.tensor(masked.value[nll].to_numpy()),
        rtol=0,
        atol=1e-5,
    )
    torch.testing.assert_close(
        torch.tensor(rolling.value[~nll].to_numpy()),
        torch.tensor(masked.value[~nll].to_numpy()),
        rtol=1e-5,
        atol=0,
    )


def test_auto_takes_the_rolling_path_only_past_the_memory_budget(monkeypatch) -> None:
    calls: list[tuple[int, int]] = []
    real = streaming.stream_token_nll

    def spy(model, ids, cache_len, n_sinks, shift, chunk):
        calls.append((cache_len, n_sinks))
        return real(model, ids, cache_len, n_sinks, shift, chunk)

    monkeypatch.setattr(streaming, "stream_token_nll", spy)
    model = _model()
    cfg = _cfg(conditions=("dense", "sinks"), sink_counts=(2,), shift_modes=("shift",))
    masked = stream_nll(model, _ids(n=12 * C), cfg)  # T = 12 C, a few MB: masked
    assert calls == []
    # the budget between the two estimates: the dense pass (a cache of T) rolls, sinks2 not
    small, large = (streaming.masked_pass_bytes(model, 12 * C, c) for c in (C, 12 * C))
    assert small < large
    monkeypatch.setattr(streaming, "MASKED_BUDGET_BYTES", (small + large) // 2)
    auto = stream_nll(model, _ids(n=12 * C), cfg)
    assert calls == [(12 * C, 0)]  # dense = a cache as long as the stream
    monkeypatch.setattr(streaming, "MASKED_BUDGET_BYTES", 0)
    calls.clear()
    rolled = stream_nll(model, _ids(n=12 * C), cfg)
    assert calls == [(12 * C, 0), (C, 2)]
    for name in ("dense", "sinks2_shift"):
        for got in (auto, rolled):
            torch.testing.assert_close(got.nll[name], masked.nll[name], rtol=0, atol=1e-5)
    with pytest.raises(ConfigError, match="path"):
        stream_nll(model, _ids(), cfg, path="fast")


def test_a_smollm2_sized_stream_rolls_and_the_default_callback_stays_masked() -> None:
    from types import SimpleNamespace

    from sinklab.model import ModelConfig

    smollm2 = SimpleNamespace(
        cfg=ModelConfig(vocab_size=49152, d_model=576, n_layers=30, n_heads=9, d_ff=1536)
    )
    dense_2k = streaming.Condition("dense", "dense")
    sinks = streaming.Condition("sinks4_shift", "cache", 4, True)
    assert streaming._path(smollm2, 20000, 256, sinks, "auto") == "rolling"
    assert streaming._path(smollm2, 1024, 256, sinks, "auto") == "masked"
    assert streaming._path(smollm2, 2048, 256, dense_2k, "auto") == "rolling"
    default = SimpleNamespace(cfg=ModelConfig())  # the default run's model: d 128, V 4096
    assert streaming._path(default, 16 * 128, 64, sinks, "auto") == "masked"
