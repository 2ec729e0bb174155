"""The data order: seeded, independent of run length, resumable at any batch, disjoint across ranks."""

from __future__ import annotations

import numpy as np
import torch

from sinklab.data.sampling import WindowSampler
from sinklab.training.datamodule import SinkDataModule


def _take(dm: SinkDataModule, n: int) -> list[dict[str, torch.Tensor]]:
    it = iter(dm.train_dataloader())
    return [next(it) for _ in range(n)]


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in ("input_ids", "targets", "loss_mask"))


def test_same_seed_same_batches_other_seed_differs(make_cfg) -> None:
    a = _take(SinkDataModule(make_cfg(seed=3)), 5)
    b = _take(SinkDataModule(make_cfg(seed=3)), 5)
    c = _take(SinkDataModule(make_cfg(seed=4)), 5)
    assert all(_same(x, y) for x, y in zip(a, b, strict=True))
    assert not all(_same(x, y) for x, y in zip(a, c, strict=True))


def test_stream_equals_batch_at_and_resume_continues(make_cfg) -> None:
    dm = SinkDataModule(make_cfg())
    full = _take(dm, 12)
    assert all(_same(full[i], dm.batch_at(i)) for i in range(12))
    resumed = SinkDataModule(make_cfg())
    resumed.load_state_dict({"batches_seen": 7})
    loader = resumed.train_dataloader()  # built before the start is known to matter
    resumed.start_batch = 7  # read at iteration time
    it = iter(loader)
    assert all(_same(next(it), full[k]) for k in range(7, 12))


def test_state_dict_counts_optimizer_steps_times_accumulation(make_cfg) -> None:
    class FakeTrainer:
        global_step = 5
        accumulate_grad_batches = 4
        global_rank, world_size = 0, 1

    dm = SinkDataModule(make_cfg())
    assert dm.state_dict() == {"batches_seen": 0}
    dm.trainer = FakeTrainer()
    assert dm.state_dict() == {"batches_seen": 20}


def test_workers_keep_the_order(make_cfg) -> None:
    dm = SinkDataModule(make_cfg(num_workers=2))
    got = _take(dm, 6)
    assert all(_same(got[i], dm.batch_at(i)) for i in range(6))


def test_ranks_read_disjoint_windows(make_cfg) -> None:
    dm = SinkDataModule(make_cfg())
    dm.setup()
    sampler = dm.batches.sampler
    b = dm.cfg.batch_size
    seen = []
    for rank in range(2):
        for i in range(3):
            g = i * 2 + rank
            seen.append(set(sampler.starts(g * b, b).tolist()))
    for x in range(len(seen)):
        for y in range(x + 1, len(seen)):
            assert not seen[x] & seen[y]
    assert not _same(dm.batch_at(0, 0, 2), dm.batch_at(0, 1, 2))
    assert _same(dm.batch_at(1, 1, 2), dm.batch_at(3, 0, 1))  # global batch 3 either way


def test_epochs_cover_every_window_once() -> None:
    sampler = WindowSampler(n_tokens=1000, window_tokens=17, stride=16, seed=0)
    n = sampler.n_windows
    first = sampler.starts(0, n)
    shift = first.min() % 16
    assert sorted(first.tolist()) == [shift + 16 * k for k in range(n)]
    assert first.max() + 17 <= 1000
    second = sampler.starts(n, n)
    assert not np.array_equal(first, second) and second.max() + 17 <= 1000
    # a batch straddling the epoch boundary is the same however it is asked for
    assert np.array_equal(sampler.starts(n - 2, 4), np.concatenate([first[-2:], second[:2]]))
