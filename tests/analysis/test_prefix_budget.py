"""The prefixed-sink searches read `prefix.search_batches` calibration batches, no more (#32).

The budget is what keeps the searches affordable (CushionCache scores every candidate at every
step), and a search that quietly read every calibration batch would pass every other test.
Here a model counts its forwards and keeps what it was run on, and the calibration batches
count how many were drawn; the answers are counted by hand from the search's steps.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from sinklab.analysis.prefix import PrefixConfig, find_prefixes, prefix_eval
from sinklab.analysis.quant import QuantConfig
from sinklab.analysis.quant_eval import ProbeQuantConfig
from sinklab.errors import ConfigError

from .test_prefix import CUSHION, SPIKY, Cushioned, data

T = 10  # the window length of `data`


class Counting(Cushioned):
    """`Cushioned`, keeping the windows of every forward (the prefix cut off)."""

    def __init__(self) -> None:
        super().__init__()
        self.windows: list[torch.Tensor] = []

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        self.windows.append(ids[:, -T:].clone())
        return super().forward(ids)


class Drawn:
    """Calibration batches that count how many were drawn."""

    def __init__(self, batches: list[torch.Tensor]) -> None:
        self.batches, self.drawn = batches, 0

    def __iter__(self) -> Iterator[torch.Tensor]:
        for b in self.batches:
            self.drawn += 1
            yield b


def read_only(model: Counting, allowed: list[torch.Tensor]) -> bool:
    return all(any(torch.equal(w, b) for b in allowed) for w in model.windows)


def test_the_greedy_search_runs_on_the_budget_alone():
    # 4 candidates: the baseline, step 1 (CUSHION wins), step 2 (no gain: stop) = 1 + 4 + 4
    # scorings, each a forward per search batch: 9 x 2 = 18, on batches 0 and 1 only
    batches = data(5, avoid=(CUSHION, SPIKY))
    cfg = PrefixConfig(
        prefixes=("cushioncache",), candidates=(1, 2, CUSHION, 9), max_len=4, search_batches=2
    )
    model, calib = Counting(), Drawn(batches)
    assert find_prefixes(model, calib, cfg) == {"cushioncache": [CUSHION]}
    forwards = len(model.windows)
    assert forwards == 18
    assert read_only(model, batches[:2])
    assert calib.drawn == 2


def test_the_outlier_search_runs_on_the_budget_alone():
    batches = data(5, avoid=(CUSHION, SPIKY))
    cfg = PrefixConfig(prefixes=("prefixquant",), bos_id=0, search_batches=3)
    model, calib = Counting(), Drawn(batches)
    find_prefixes(model, calib, cfg)
    forwards = len(model.windows)
    assert forwards == 3  # one forward per search batch
    assert read_only(model, batches[:3])
    assert calib.drawn == 3


def test_candidates_come_from_the_search_batches_only():
    # CUSHION is the most frequent token of batch 2 alone: outside a 2-batch budget
    batches = data(3, avoid=(CUSHION, SPIKY))
    batches[2][:, 1::2] = CUSHION
    cfg = PrefixConfig(prefixes=("cushioncache",), n_candidates=1, search_batches=2)
    assert find_prefixes(Cushioned(), batches, cfg) == {"cushioncache": []}
    wider = PrefixConfig(prefixes=("cushioncache",), n_candidates=1, search_batches=3)
    assert find_prefixes(Cushioned(), batches, wider) == {"cushioncache": [CUSHION]}


def planted_outliers() -> list[torch.Tensor]:
    """3 calibration batches; only the last holds outlier tokens (CUSHION at 0 tames the tokens
    after it, so it and the two SPIKY tokens of each window stand out)."""
    batches = data(3, avoid=(CUSHION, SPIKY))
    batches[2][:, 0] = CUSHION
    batches[2][:, 4] = SPIKY
    batches[2][:, 6] = SPIKY
    return batches


def test_prefix_eval_searches_within_the_budget():
    batches = planted_outliers()
    eval_ids = data(1, avoid=(CUSHION, SPIKY), seed=9)[0]
    qcfg = QuantConfig(modes=("per_token_dynamic",), calibration_batches=3)

    def found(search_batches: int) -> list[int]:
        pcfg = PrefixConfig(prefixes=("prefixquant",), bos_id=0, search_batches=search_batches)
        v = dict(
            prefix_eval(Cushioned(), eval_ids, batches, qcfg, pcfg)[["metric", "value"]].values
        )
        n = int(v["quant/prefix/prefixquant/len"])
        return [int(v[f"quant/prefix/prefixquant/token_{i}"]) for i in range(n)]

    assert found(2) == [0]  # batches 0 and 1 have no outlier token
    # 3 batches: 12 outlier positions over 12 windows, so ceil(1) = 1 token, the commonest
    assert found(3) == [0, SPIKY]


SAYS = "must be <= the 2 calibration batches the searches draw from, got 3"


def test_a_budget_beyond_the_calibration_batches_is_refused_before_any_work():
    """Otherwise a budget of 3 over 2 calibration batches would quietly search on 2."""
    batches = data(2, avoid=(CUSHION, SPIKY))
    qcfg = QuantConfig(modes=("per_token_dynamic",), calibration_batches=2)
    model = Counting()
    pcfg = PrefixConfig(prefixes=("cushioncache",), search_batches=3)
    with pytest.raises(ConfigError) as err:
        prefix_eval(model, batches[0], batches, qcfg, pcfg)
    assert str(err.value) == f"prefix.search_batches: {SAYS}"
    assert model.windows == []
    # the BOS prefix searches nothing: no budget to check
    bos = PrefixConfig(prefixes=("bos",), bos_id=0, search_batches=3)
    prefix_eval(model, batches[0], batches, qcfg, bos)
    # at the budget's limit the search runs
    fits = PrefixConfig(prefixes=("prefixquant",), search_batches=2)
    prefix_eval(model, batches[0], batches, qcfg, fits)


@pytest.mark.parametrize("section", ["callbacks.probe.quant", "quant"])
def test_the_probe_config_refuses_the_budget_under_its_own_key(section: str):
    values = {
        "quantizer": {"calibration_batches": 2},
        "prefix": {"prefixes": ["prefixquant"], "search_batches": 3},
    }
    with pytest.raises(ConfigError) as err:
        ProbeQuantConfig.from_dict(values, section)
    assert str(err.value) == f"{section}.prefix.search_batches: {SAYS}"
