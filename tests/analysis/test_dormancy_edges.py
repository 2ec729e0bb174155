"""Dormancy edge cases: a wrong label (zeroing where "dormant" costs the help), the default
batch size, one counted prediction, 0/1 masks of integer dtype, where the windows are sent
(the meta device stands in for an accelerator) and the shape error's wording."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from sinklab.analysis import dormancy_intervention
from sinklab.analysis.dormancy import split_by_trigger
from sinklab.model.probe import ProbeOutput
from tests.analysis.analysis_builders import OracleModel

N, T, H, VOCAB, BOOST = 4, 6, 2, 8, 10.0
GOOD = math.log(1 + (VOCAB - 1) * math.exp(-BOOST))  # loss where head 0 helps
BAD = math.log(VOCAB)  # loss elsewhere (zero logits)


def _helps() -> torch.Tensor:
    helps = torch.zeros(N, T, dtype=torch.bool)
    helps[:, 2] = True
    helps[0, 4] = True
    return helps


def _ids() -> torch.Tensor:
    ids = torch.remainder(torch.arange(N * T).view(N, T) * 3, VOCAB)
    ids[:, 0] = torch.arange(N)  # OracleModel finds its window by the first token
    return ids


def _value(df, metric: str, head: int = 0) -> float:
    return df[(df.metric == metric) & (df["head"] == head)].value.item()


def test_zeroing_where_wrongly_labelled_dormant_costs_the_help() -> None:
    """Labelled dormant exactly where head 0 helps: the 'dormant' run loses the help."""
    helps = _helps()
    labels = helps[:, None, None, :].expand(N, 1, H, T).clone()
    df = dormancy_intervention(OracleModel(helps=helps, vocab=VOCAB), _ids(), labels)
    helped, preds = float(helps[:, :-1].sum()), N * (T - 1)
    assert _value(df, "dormancy/delta_loss_dormant") == pytest.approx(helped / preds * (BAD - GOOD))
    assert _value(df, "dormancy/delta_loss_active") == pytest.approx(0.0, abs=1e-9)


class _Counting(nn.Module):
    """Zero logits; records the batch sizes and devices it is called with."""

    def __init__(self, device: str = "cpu", stop: bool = False) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1, device=device))
        self.sizes: list[int] = []
        self.devices: list[torch.device] = []
        self.stop = stop

    def forward_probe(self, ids: torch.Tensor, *, names=None, edits=None) -> ProbeOutput:
        self.sizes.append(ids.shape[0])
        self.devices.append(ids.device)
        if self.stop:
            raise _Stop
        return ProbeOutput(logits=torch.zeros(ids.shape[0], ids.shape[1], VOCAB))


class _Stop(Exception):
    pass


def test_default_batch_is_at_most_25_windows() -> None:
    model = _Counting()
    ids = torch.zeros(51, T, dtype=torch.long)
    labels = torch.zeros(51, 1, 1, T, dtype=torch.bool)
    df = dormancy_intervention(model, ids, labels)
    assert model.sizes == [25, 25, 1] * 3  # base, then the dormant and the active run
    assert _value(df, "dormancy/base_loss", -1) == pytest.approx(BAD)


def test_one_counted_prediction_is_its_own_mean() -> None:
    mask = torch.zeros(N, T, dtype=torch.bool)
    mask[1, 3] = True
    labels = torch.zeros(N, 1, H, T, dtype=torch.bool)
    df = dormancy_intervention(
        OracleModel(helps=_helps(), vocab=VOCAB), _ids(), labels, loss_mask=mask, device="cpu"
    )
    assert _value(df, "dormancy/base_loss", -1) == pytest.approx(BAD)


def test_an_integer_0_1_loss_mask_counts_like_a_bool_one() -> None:
    helps = _helps()
    labels = torch.zeros(N, 1, H, T, dtype=torch.bool)
    mask = torch.zeros(N, T - 1, dtype=torch.long)
    mask[0, 2] = mask[0, 4] = mask[3, 1] = 1  # two helped predictions, one not
    df = dormancy_intervention(
        OracleModel(helps=helps, vocab=VOCAB), _ids(), labels, loss_mask=mask
    )
    assert _value(df, "dormancy/base_loss", -1) == pytest.approx((2 * GOOD + BAD) / 3)


def test_integer_trigger_masks_split_like_bool_ones() -> None:
    values = torch.arange(2 * 1 * 4, dtype=torch.float32).view(2, 1, 4)
    trig = torch.tensor([[0, 1, 0, 0], [1, 0, 0, 1]])
    on, off = split_by_trigger(values, trig)
    torch.testing.assert_close(on, torch.tensor([(1 + 7) / 2]))
    torch.testing.assert_close(off, torch.tensor([(2 + 3 + 5 + 6) / 4]))


def test_windows_go_to_the_model_device_by_default() -> None:
    model = _Counting(device="meta", stop=True)
    with pytest.raises(_Stop):
        dormancy_intervention(model, torch.zeros(2, T, dtype=torch.long), torch.zeros(2, 1, 1, T))
    assert model.devices == [torch.device("meta")]


def test_windows_go_to_the_device_asked_for() -> None:
    model = _Counting(stop=True)
    with pytest.raises(_Stop):
        dormancy_intervention(
            model, torch.zeros(2, T, dtype=torch.long), torch.zeros(2, 1, 1, T), device="meta"
        )
    assert model.devices == [torch.device("meta")]


def test_shape_mismatch_names_both_shapes() -> None:
    want = "input_ids (2, 5) does not match labels (2, 1, 2, 4)"
    with pytest.raises(ValueError, match=f"^{re.escape(want)}$"):
        dormancy_intervention(
            _Counting(), torch.zeros(2, 5, dtype=torch.long), torch.zeros(2, 1, 2, 4)
        )
