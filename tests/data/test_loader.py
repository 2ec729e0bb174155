"""The compact worker loader (data/loader.py): each value goes into the narrowest integer type
that holds it and comes back exactly; with 2 workers the loader serves bit-identical batches,
in order, to the batch maker's own, from any resumed start; and a batch crosses the queue in
a quarter of its int64 bytes."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from sinklab.data.loader import CompactBatch, CompactLoader, compact, expand, narrow
from sinklab.training.datamodule import SinkDataModule
from tests.data.test_shards import _cfg, _docs, _write


@pytest.mark.parametrize(
    ("low", "high", "dtype"),
    [
        (0, 255, np.uint8),
        (-1, 100, np.int8),
        (0, 256, np.uint16),
        (0, 65_535, np.uint16),
        (-1, 200, np.int16),
        (0, 65_536, np.uint32),
        (-100, 40_000, np.int32),
        (0, 2**32 - 1, np.uint32),
        (-1, 2**31, np.int64),
    ],
)
def test_narrow_picks_the_smallest_type_that_holds_every_value(
    low: int, high: int, dtype: type
) -> None:
    values = np.array([[low, high], [high, low]], dtype=np.int64)
    small = narrow(values)
    assert small.dtype == np.dtype(dtype)
    assert (small.astype(np.int64) == values).all()


def test_bools_floats_and_empty_arrays_are_left_as_they_are() -> None:
    for values in (np.array([True, False]), np.array([0.5, 2.0]), np.empty(0, dtype=np.int64)):
        assert narrow(values) is values


def test_compact_then_expand_restores_values_and_dtypes_exactly() -> None:
    batch = {
        "input_ids": torch.tensor([[0, 8191], [5, 7]]),
        "targets": torch.tensor([[-100, 3], [2, 1]]),
        "loss_mask": torch.tensor([[True, False], [False, True]]),
        "weights": torch.tensor([0.25, 1e-8], dtype=torch.float32),
    }
    item = pickle.loads(pickle.dumps(compact(batch)))
    assert isinstance(item, CompactBatch)
    assert item.arrays["input_ids"].dtype == np.uint16
    assert item.arrays["targets"].dtype == np.int8
    back = expand(item)
    assert set(back) == set(batch)
    for key, tensor in batch.items():
        assert back[key].dtype == tensor.dtype and torch.equal(back[key], tensor)
    assert expand(batch) is batch  # a batch of tensors (no workers) passes through


@pytest.fixture
def datamodule(tmp_path: Path) -> SinkDataModule:
    _write(tmp_path / "corpus", _docs(per_file=60))
    dm = SinkDataModule(_cfg(tmp_path, num_workers=2))
    dm.progress = False
    dm.setup("fit")
    return dm


@pytest.mark.parametrize("workers", [0, 2])
def test_the_loader_serves_the_batch_makers_batches_in_order_from_a_resumed_start(
    datamodule: SinkDataModule, workers: int
) -> None:
    datamodule.start_batch = 7  # as a resume from the checkpoint's batches_seen sets it
    stream = datamodule.train_dataloader().dataset
    loader = CompactLoader(stream, num_workers=workers)
    it = iter(loader)
    served = [next(it) for _ in range(9)]
    del it
    for i, batch in enumerate(served):
        expected = datamodule.batches.batch(7 + i)
        assert set(batch) == set(expected)
        for key, tensor in expected.items():
            assert batch[key].dtype == tensor.dtype and torch.equal(batch[key], tensor)


def test_a_shard_batch_crosses_in_a_quarter_of_its_int64_bytes(
    datamodule: SinkDataModule,
) -> None:
    batch = datamodule.batches.batch(0)
    item = compact(batch)
    ids = batch["input_ids"].numel()
    # byte-tokenizer ids (< 259) as uint16, the mask as bool: 2 + 2 + 1 bytes a token, not 17
    assert sum(a.nbytes for a in item.arrays.values()) == 5 * ids
    sent = len(pickle.dumps(item, protocol=pickle.HIGHEST_PROTOCOL))
    assert 5 * ids < sent < 5 * ids + 400  # plus a few names, not a copy per tensor
