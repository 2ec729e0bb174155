"""`full_model` under real sharding on the CPU: two gloo processes shard a tiny Transformer
with FSDP2 (`fully_shard`) or FSDP1 (`FullyShardedDataParallel`, what Lightning's
`strategy: fsdp` wraps), every rank calls the gather, and rank 0 checks that the plain copy
holds the unsharded model's exact tensors and gives its probe rows bit for bit.

Lightning's FSDPStrategy refuses the CPU accelerator, so the probe callback's FSDP branch
itself runs only on a GPU (tests/gpu); this tests the function that branch calls.
"""

from __future__ import annotations

import copy
import datetime
import os
import socket
import time
from types import SimpleNamespace

import pandas as pd
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sinklab.analysis.pipeline import measure_probe_set
from sinklab.data import ProbeSet
from sinklab.model import ModelConfig, Transformer
from sinklab.training.full_params import full_model, rank0_model, sharding

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed missing")

WORLD = 2
CASES = [("fsdp2", True), ("fsdp1", False)]  # FSDP2 with tied embeddings, FSDP1 without
TIMEOUT_S = 120  # a hang fails the test instead of stalling the suite


def _model(tie: bool) -> Transformer:
    """Odd vocabulary (67 rows over 2 ranks): shards of unequal size, padding included."""
    cfg = ModelConfig.from_dict(
        {
            "vocab_size": 67,
            "d_model": 32,
            "n_layers": 2,
            "n_heads": 4,
            "n_kv_heads": 2,
            "max_seq_len": 16,
            "tie_embeddings": tie,
        }
    )
    torch.manual_seed(0)  # the same weights on every rank, as a real run starts
    return Transformer(cfg)


def _probe_set() -> ProbeSet:
    ids = torch.randint(0, 67, (6, 16), generator=torch.Generator().manual_seed(1))
    return ProbeSet(input_ids=ids, text=[""] * 6)


class _Outer(torch.nn.Module):
    """Stands in for the LightningModule that FSDP1 wraps as a whole: the model one level down."""

    def __init__(self, model: Transformer) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids)


def _shard(model: Transformer, kind: str) -> torch.nn.Module:
    """Shard as the strategies do; returns the root a caller passes to `full_model`."""
    if kind == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:
            fully_shard(block)
        fully_shard(model)
        return model
    from torch.distributed.fsdp import FullyShardedDataParallel

    return FullyShardedDataParallel(
        _Outer(model), device_id=torch.device("cpu"), use_orig_params=True
    )


def _worker(rank: int, port: int) -> None:
    """Both cases in one pair of processes (starting them is most of the test's time)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", rank=rank, world_size=WORLD, timeout=datetime.timedelta(seconds=TIMEOUT_S)
    )
    try:
        for kind, tie in CASES:
            _check(rank, kind, tie)
    finally:
        dist.destroy_process_group()


def _check(rank: int, kind: str, tie: bool) -> None:
    """Shard, gather on every rank, compare on rank 0 (assertion messages name the case)."""
    model = _model(tie)
    reference = copy.deepcopy(model).eval()  # the unsharded model, never touched again
    root = _shard(model, kind)
    assert sharding(root) == kind, kind
    ids = torch.randint(0, 67, (2, 16), generator=torch.Generator().manual_seed(rank))
    root(ids).sum().backward()  # lazy init done, parameters resharded after backward

    if kind == "fsdp1":  # Lightning's shape: through the hook the probe callback calls
        trainer = SimpleNamespace(strategy=SimpleNamespace(model=root), is_global_zero=rank == 0)
        module = SimpleNamespace(model=model, device=torch.device("cpu"))
        gathered = rank0_model(trainer, module)
    else:
        gathered = full_model(model, root)

    # the gather drew nothing from rank 0's RNG: every rank's stream is still the same
    draws = [torch.empty(4) for _ in range(WORLD)]
    dist.all_gather(draws, torch.rand(4))
    assert torch.equal(draws[0], draws[1])
    root(ids).sum().backward()  # the sharded model still trains after the gather
    if rank != 0:
        assert gathered is None
        return
    assert gathered is not None and gathered is not model
    assert sharding(gathered) == "none" and not gathered.training
    got, want = gathered.state_dict(), reference.state_dict()
    assert list(got) == list(want)
    for key, tensor in want.items():
        assert type(got[key]) is torch.Tensor, (kind, key)
        assert torch.equal(got[key], tensor), (kind, key)
    if tie:
        assert gathered.lm_head.weight is gathered.tok_emb.weight
    probe = _probe_set()
    rows, _ = measure_probe_set(gathered, probe, batch_size=3)
    expected, _ = measure_probe_set(reference, probe, batch_size=3)
    assert len(rows) > 0
    pd.testing.assert_frame_equal(rows, expected, check_exact=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn() -> None:
    """Both ranks in fresh processes; an exception in either fails the test, a hang past
    TIMEOUT_S kills them and fails it."""
    ctx = mp.start_processes(
        _worker, args=(_free_port(),), nprocs=WORLD, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + TIMEOUT_S
    while not ctx.join(timeout=1.0):
        if time.monotonic() > deadline:
            for proc in ctx.processes:
                proc.kill()
            pytest.fail(f"the gather did not finish within {TIMEOUT_S} s (hang)")


def test_every_rank_gathers_and_rank0_probes_the_exact_unsharded_model() -> None:
    _spawn()


def test_an_unsharded_model_is_returned_itself_without_a_copy() -> None:
    model = _model(tie=False)
    assert sharding(model) == "none"
    assert full_model(model) is model


@pytest.mark.parametrize("wrap", [False, True])
def test_the_probe_hook_leaves_unsharded_runs_as_they_were(wrap: bool) -> None:
    """One process or DDP: rank 0 probes the training model itself, other ranks skip, no copy."""
    model = _model(tie=False)
    module = SimpleNamespace(model=model, device=torch.device("cpu"))
    root = _Outer(model) if wrap else model  # DDP's wrapper, too, sits above an unsharded model
    for rank in range(WORLD):
        trainer = SimpleNamespace(strategy=SimpleNamespace(model=root), is_global_zero=rank == 0)
        got = rank0_model(trainer, module)
        assert got is (model if rank == 0 else None)
