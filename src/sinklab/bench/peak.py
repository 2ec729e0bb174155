"""The machine's matmul peak, measured in the same process as the throughput it normalises.

A datasheet figure is wrong on a shared VM (turbo, contention, thread pinning), and a hard-coded
one gives MFU above 100 % on the next machine. So the peak is the best of several large square
matmuls at the very thread count the training loops use: fp32 on the CPU (the training dtype
there), bf16 on a GPU (what tensor cores and bf16-mixed training run at).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sinklab.bench.timing import best_time


@dataclass(frozen=True)
class Peak:
    wall: float  # FLOP per wall second
    cpu: float  # FLOP per CPU second of this process
    dtype: str
    size: int


def best_peak(readings: list[Peak]) -> Peak:
    """The machine's peak: the best reading by each clock (contention only ever lowers one)."""
    return Peak(
        wall=max(r.wall for r in readings),
        cpu=max(r.cpu for r in readings),
        dtype=readings[0].dtype,
        size=readings[0].size,
    )


def peak_dtype(device: torch.device | str) -> torch.dtype:
    """fp32 on the CPU, bf16 on an accelerator."""
    return torch.float32 if torch.device(device).type == "cpu" else torch.bfloat16


def default_size(device: torch.device | str) -> int:
    """Large enough to be compute-bound, small enough to take well under a second per matmul."""
    return 2048 if torch.device(device).type == "cpu" else 8192


def matmul_peak(
    device: torch.device | str = "cpu",
    size: int | None = None,
    repeats: int = 5,
    dtype: torch.dtype | None = None,
) -> Peak:
    """FLOP/s of the fastest of `repeats` size x size matmuls (2 n^3 FLOPs each), per wall
    second and per CPU second (the latter only meaningful on the CPU)."""
    device = torch.device(device)
    n = size or default_size(device)
    dtype = dtype or peak_dtype(device)
    gen = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=gen).to(device=device, dtype=dtype)
    out = torch.empty(n, n, device=device, dtype=dtype)
    torch.mm(a, b, out=out)  # warm-up: library initialisation, first-touch of the pages
    took = best_time(lambda: torch.mm(a, b, out=out), repeats, device)
    flops = 2.0 * n**3
    return Peak(
        wall=flops / took.wall,
        cpu=flops / took.cpu if took.cpu > 0 else float("nan"),
        dtype=str(dtype).removeprefix("torch."),
        size=n,
    )


def achieved_flops_per_rank(
    global_tokens_per_s: float, flops_per_token: float, world_size: int = 1
) -> float:
    """Model FLOP/s done by one rank.

    `global_tokens_per_s` counts every token of every rank and micro-batch (as sinklab's
    `tokens_per_step` does), so under DDP or FSDP each rank did 1/world_size of it; gradient
    accumulation needs no correction because its micro-batches are already in the token count.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    return global_tokens_per_s * flops_per_token / world_size


def mfu(
    global_tokens_per_s: float, flops_per_token: float, peak_flops: float, world_size: int = 1
) -> float:
    """Model FLOPs utilisation of one rank against that rank's device peak (a fraction)."""
    if peak_flops <= 0:
        raise ValueError(f"peak_flops must be positive, got {peak_flops}")
    return achieved_flops_per_rank(global_tokens_per_s, flops_per_token, world_size) / peak_flops
