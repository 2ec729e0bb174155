"""Windows, targets and loss masks: the positions that carry loss are exactly the configured ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sinklab.data.windows import WindowSpec, make_batch
from sinklab.training.datamodule import SinkDataModule


def _spec(**kw) -> WindowSpec:
    base = dict(
        seq_len=8,
        bos="none",
        bos_id=99,
        min_context=0,
        context_end=8,
        vocab_size=100,
        special_ids=(97, 98, 99),
    )
    base.update(kw)
    return WindowSpec(**base)


def test_targets_are_next_tokens_and_bos_modes() -> None:
    stream = np.arange(50)
    gen = np.random.default_rng(0)
    b = make_batch(stream, np.array([0, 10]), _spec(), gen)
    assert b["input_ids"][1].tolist() == list(range(10, 18))
    assert b["targets"][1].tolist() == list(range(11, 19))
    b = make_batch(stream, np.array([10]), _spec(bos="every_window"), gen)
    assert b["input_ids"][0].tolist() == [99] + list(range(10, 17))
    assert b["targets"][0].tolist() == list(range(10, 18))


@pytest.mark.parametrize(("min_ctx", "max_ctx"), [(0, None), (5, None), (3, 10), (0, 1), (15, 16)])
def test_loss_mask_positions(make_cfg, min_ctx: int, max_ctx: int | None) -> None:
    dm = SinkDataModule(make_cfg(min_context=min_ctx, max_context=max_ctx))
    batch = dm.batch_at(3)
    end = 16 if max_ctx is None else max_ctx
    expected = torch.tensor([min_ctx <= t < end for t in range(16)])
    assert torch.equal(batch["loss_mask"], expected.expand(4, 16))
    assert dm.loss_tokens_per_batch() == int(batch["loss_mask"].sum()) == 4 * (end - min_ctx)
    # The validation batches carry the same mask.
    val = next(iter(dm.val_dataloader()))
    assert torch.equal(val["loss_mask"], expected.expand(4, 16))


def test_padding_targets_carry_no_loss() -> None:
    stream = np.array([5, 6, 7, 98, 98, 98, 98, 98, 98, 98])
    b = make_batch(
        stream, np.array([0]), _spec(seq_len=6, context_end=6), np.random.default_rng(0), pad_id=98
    )
    assert b["loss_mask"][0].tolist() == [True, True, False, False, False, False]


def test_document_start_puts_bos_before_each_document(make_cfg) -> None:
    dm = SinkDataModule(make_cfg(bos="document_start", seq_len=32))
    dm.setup()
    eos, bos = dm.eos_id, dm.bos_id
    seen_bos = 0
    for i in range(40):
        ids = dm.batch_at(i)["input_ids"]
        after_eos = ids[:, 1:][ids[:, :-1] == eos]
        assert torch.all(after_eos == bos)
        seen_bos += int((ids == bos).sum())
    assert seen_bos > 0


def test_every_window_starts_with_bos(make_cfg) -> None:
    dm = SinkDataModule(make_cfg(bos="every_window"))
    dm.setup()
    ids = dm.batch_at(0)["input_ids"]
    assert torch.all(ids[:, 0] == dm.bos_id) and not torch.any(ids[:, 1:] == dm.bos_id)


def test_first_token_random_and_fixed(make_cfg) -> None:
    natural = SinkDataModule(make_cfg()).batch_at(2)
    fixed = SinkDataModule(make_cfg(first_token="fixed", first_token_id=7)).batch_at(2)
    assert torch.all(fixed["input_ids"][:, 0] == 7)
    assert torch.equal(fixed["input_ids"][:, 1:], natural["input_ids"][:, 1:])
    assert torch.equal(fixed["targets"], natural["targets"])
    dm = SinkDataModule(make_cfg(first_token="random", batch_size=64))
    first = torch.cat([dm.batch_at(i)["input_ids"][:, 0] for i in range(4)])
    assert len(set(first.tolist())) > 50  # far more variety than the letter corpus has
    assert first.max() < 256  # never a special token of the byte tokenizer
    assert torch.equal(dm.batch_at(1)["input_ids"], dm.batch_at(1)["input_ids"])
