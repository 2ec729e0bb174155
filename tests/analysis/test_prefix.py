"""Prefixed sinks: the searches find a planted token, the FP + prefix control is reported,
and bad input fails with the key named."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from sinklab.analysis import quant, template_of
from sinklab.analysis.prefix import (
    PrefixConfig,
    cushioncache_prefix,
    frequent_tokens,
    max_activation,
    prefix_eval,
    prefixquant_prefix,
)
from sinklab.analysis.quant import QuantConfig
from sinklab.errors import ConfigError
from sinklab.model.config import ModelConfig
from sinklab.model.transformer import build_model

V, CUSHION, SPIKY = 12, 7, 3


class Cushioned(nn.Module):
    """A causal stand-in: every token carries a 100x activation into its linear layer unless
    token CUSHION appeared before it, which plays the sink that absorbs the spike. Token SPIKY
    always carries a 100x activation (an outlier token for PrefixQuant to find)."""

    def __init__(self) -> None:
        super().__init__()
        self.cfg = SimpleNamespace(n_sink_tokens=0, max_seq_len=64)
        self.emb = nn.Embedding(V, 4)
        nn.init.constant_(self.emb.weight, 1.0)
        self.lin = nn.Linear(4, V)
        self.lm_head = nn.Linear(V, V)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        is_cushion = (ids == CUSHION).long()
        before = is_cushion.cumsum(1) - is_cushion  # cushions strictly before t
        scale = 1.0 + 99.0 * (before == 0).float() + 99.0 * (ids == SPIKY).float()
        return self.lm_head(self.lin(self.emb(ids) * scale[..., None]))


def data(n: int, *, avoid: tuple[int, ...] = (CUSHION,), seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    pool = torch.tensor([t for t in range(V) if t not in avoid])
    return [pool[torch.randint(0, len(pool), (4, 10), generator=g)] for _ in range(n)]


def test_frequent_tokens_counts_and_breaks_ties_by_id():
    b = [torch.tensor([[5, 5, 2, 9]]), torch.tensor([[2, 5, 9, 1]])]
    assert frequent_tokens(b, 3) == [5, 2, 9]


def test_max_activation_is_of_the_following_tokens_only():
    model, batches = Cushioned(), data(1, avoid=(CUSHION, SPIKY))
    assert max_activation(model, batches) == pytest.approx(100.0)
    # the cushion itself carries the spike, but it is the prefix: left out
    assert max_activation(model, batches, [CUSHION]) == pytest.approx(1.0)


def test_greedy_search_picks_the_planted_cushion_and_stops():
    batches = data(2, avoid=(CUSHION, SPIKY))
    cfg = PrefixConfig(prefixes=("cushioncache",), candidates=(1, 2, CUSHION, 9), max_len=4)
    assert cushioncache_prefix(Cushioned(), batches, cfg) == [CUSHION]
    with_bos = PrefixConfig(
        prefixes=("cushioncache",), bos_id=0, candidates=(1, CUSHION), max_len=4
    )
    assert cushioncache_prefix(Cushioned(), batches, with_bos) == [0, CUSHION]


def test_greedy_candidates_default_to_the_most_frequent_tokens():
    batches = data(2, avoid=(SPIKY,))
    for b in batches:
        b[:, 1::2] = CUSHION  # the most frequent token of the calibration data
    cfg = PrefixConfig(prefixes=("cushioncache",), n_candidates=1)
    assert cushioncache_prefix(Cushioned(), batches, cfg) == [CUSHION]


def test_prefixquant_prefix_is_bos_plus_the_most_frequent_outlier_tokens():
    batches = data(2, avoid=())
    for b in batches:
        b[:, 0] = CUSHION  # spiked itself (nothing before it), tames the tokens after it
        b[:, 4] = SPIKY
        b[:, 6] = SPIKY
    # outlier tokens per window: CUSHION once, SPIKY twice -> ceil(3) = 3 wanted, 2 exist
    found = prefixquant_prefix(Cushioned(), batches, PrefixConfig(bos_id=0))
    assert found == [0, SPIKY, CUSHION]
    one = PrefixConfig(bos_id=0, n_outlier_tokens=1)
    assert prefixquant_prefix(Cushioned(), batches, one) == [0, SPIKY]
    capped = PrefixConfig(bos_id=0, max_len=2)
    assert prefixquant_prefix(Cushioned(), batches, capped) == [0, SPIKY]


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return build_model(
        ModelConfig(vocab_size=16, d_model=32, n_layers=2, n_heads=2, max_seq_len=32, init_std=0.2)
    ).eval()


def test_prefix_eval_reports_the_fp_plus_prefix_control():
    model = tiny()
    g = torch.Generator().manual_seed(1)
    calib = [torch.randint(1, 16, (4, 16), generator=g) for _ in range(2)]
    ev = torch.randint(1, 16, (6, 16), generator=g)
    pcfg = PrefixConfig(bos_id=0, max_len=3, n_candidates=4, search_batches=1)
    df = prefix_eval(model, ev, calib, QuantConfig(calibration_batches=2), pcfg)
    v = dict(zip(df.metric, df.value, strict=True))
    assert all(template_of(n) is not None for n in v)
    for name in ("bos", "prefixquant", "cushioncache"):
        p = f"quant/prefix/{name}"
        assert f"{p}/ppl/fp" in v
        assert v[f"{p}/ppl_fp_change"] == pytest.approx(v[f"{p}/ppl/fp"] - v["quant/ppl/fp"])
        for mode in quant.MODES:
            assert v[f"{p}/ppl_increase/{mode}"] == pytest.approx(
                v[f"{p}/ppl/{mode}"] - v[f"{p}/ppl/fp"]
            )
        n = int(v[f"{p}/len"])
        tokens = [int(v[f"{p}/token_{i}"]) for i in range(n)]
        assert tokens[0] == 0 and 1 <= n <= 3
        # the control is an independent FP run with the prefix prepended
        assert v[f"{p}/ppl/fp"] == pytest.approx(quant.perplexity(model, ev, tokens))
    assert v["quant/prefix/bos/len"] == 1.0
    # a prefix does change the FP perplexity of this model: why the control matters
    assert v["quant/prefix/bos/ppl_fp_change"] != 0.0


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"prefixes": ["bos", "attention_sink"]}, "prefix.prefixes"),
        ({"eta": 1.0}, "prefix.eta"),
        ({"max_len": 0}, "prefix.max_len"),
    ],
)
def test_bad_prefix_config_is_a_one_line_error_naming_the_key(values, key):
    with pytest.raises(ConfigError) as err:
        PrefixConfig.from_dict(values)
    assert err.value.key == key and "\n" not in str(err.value)


def test_the_bos_prefix_without_a_bos_id_is_refused_before_any_work():
    batches = [torch.ones(2, 8, dtype=torch.long)]
    with pytest.raises(ConfigError, match=r"^prefix\.bos_id: the 'bos' prefix needs"):
        prefix_eval(tiny(), batches[0], batches, QuantConfig(calibration_batches=1), PrefixConfig())


def test_a_prefix_longer_than_the_window_allows_is_refused_before_any_work():
    model = tiny()  # max_seq_len 32
    windows = [torch.ones(2, 30, dtype=torch.long)]
    pcfg = PrefixConfig(prefixes=("cushioncache",), max_len=4)
    with pytest.raises(ConfigError, match=r"^prefix\.max_len: a 4-token prefix plus 30-token"):
        prefix_eval(model, windows[0], windows, QuantConfig(calibration_batches=1), pcfg)
