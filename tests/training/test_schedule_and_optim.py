"""The checkpoint schedule and the optimiser's decay groups and learning-rate curve."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sinklab.runs.schedule import is_scheduled, log_spaced_steps
from sinklab.training.config import OptimConfig
from sinklab.training.optim import build_optimizer, decay_groups, lr_factor


def test_log_spaced_schedule_matches_pythia() -> None:
    assert log_spaced_steps(3000, 512, 1000) == [
        0,
        1,
        2,
        4,
        8,
        16,
        32,
        64,
        128,
        256,
        512,
        1000,
        2000,
        3000,
    ]
    assert log_spaced_steps(10, 4, 6) == [0, 1, 2, 4, 6, 10]
    # every 3 up to 9 = max_steps - 1 (the last multiple before the end is kept); no powers
    # of two when log_spaced_until is 0, so step 1 is not scheduled
    assert log_spaced_steps(10, 0, 3) == [0, 3, 6, 9, 10]


@pytest.mark.parametrize(
    "max_steps,until,every", [(3000, 512, 1000), (37, 8, 5), (1, 0, 1), (10, 0, 3)]
)
def test_is_scheduled_agrees_with_the_list(max_steps: int, until: int, every: int) -> None:
    listed = set(log_spaced_steps(max_steps, until, every))
    assert {s for s in range(max_steps + 1) if is_scheduled(s, max_steps, until, every)} == listed


class _Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(10, 4)
        self.proj = nn.Linear(4, 4, bias=True)
        self.norm = nn.LayerNorm(4)
        self.sink_logit = nn.Parameter(torch.zeros(2))


def test_decay_only_on_matrices_by_default() -> None:
    model = _Toy()
    groups = decay_groups(model, OptimConfig(weight_decay=0.5))
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[0]["weight_decay"] == 0.5 and groups[1]["weight_decay"] == 0.0
    assert decayed == {id(model.proj.weight)}
    groups = decay_groups(
        model, OptimConfig(weight_decay=0.5, decay_embeddings=True, decay_norms_and_biases=True)
    )
    assert len(groups[0]["params"]) == sum(1 for _ in model.parameters())


def test_sgd_choice_builds_sgd_with_momentum() -> None:
    opt = build_optimizer(_Toy(), OptimConfig(name="sgd", lr=0.1, momentum=0.8))
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.8


def test_warmup_then_cosine_to_min_ratio() -> None:
    cfg = OptimConfig(warmup_steps=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_factor(0, 110, cfg) == pytest.approx(0.1)
    assert lr_factor(9, 110, cfg) == pytest.approx(1.0)
    assert lr_factor(10, 110, cfg) == pytest.approx(1.0)
    assert lr_factor(60, 110, cfg) == pytest.approx(0.55)
    assert lr_factor(110, 110, cfg) == pytest.approx(0.1)
    assert lr_factor(50, 110, OptimConfig(warmup_steps=10, schedule="constant")) == 1.0
