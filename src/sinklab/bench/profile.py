"""Where a training step's time goes: torch.profiler self-times, grouped into a few buckets.

MFU counts only matmul FLOPs, so the question behind a low MFU is always the same: how much of
the step is spent outside the big matmuls, and how fast do the matmuls themselves run. The
buckets answer the first; the matmul bucket's own FLOP/s (6N per token over its time)
answers the second.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from sinklab.bench.plain import plain_step_seconds
from sinklab.bench.recipe import Recipe
from sinklab.model import ModelConfig, Transformer, num_params

BUCKETS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("matmul (linear layers, LM head)", ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul")),
    ("fused attention (SDPA fwd+bwd)", ("scaled_dot_product",)),
    (
        "explicit attention (softmax/sigmoid/relu)",
        (
            "aten::_softmax",
            "aten::sigmoid",
            "aten::relu",
            "aten::_softmax_backward_data",
            "aten::sigmoid_backward",
            "aten::threshold_backward",
        ),
    ),
    (
        "activation (silu/gelu)",
        ("aten::silu", "aten::gelu", "aten::silu_backward", "aten::gelu_backward"),
    ),
    (
        "elementwise (mul/add/norm/rope/copies)",
        (
            "aten::mul",
            "aten::add",
            "aten::pow",
            "aten::rsqrt",
            "aten::mean",
            "aten::neg",
            "aten::cat",
            "aten::copy_",
            "aten::div",
            "aten::sum",
            "aten::fill_",
            "aten::sub",
            "aten::where",
            "aten::masked_fill",
        ),
    ),
    (
        "optimizer and grad clip (foreach/lerp/sqrt/norm)",
        (
            "aten::_foreach",
            "aten::lerp",
            "aten::addcdiv",
            "aten::addcmul",
            "aten::sqrt",
            "aten::linalg_vector_norm",
            "aten::clamp",
            "aten::stack",
        ),
    ),
    ("loss (log_softmax, nll)", ("log_softmax", "nll_loss")),
)


def bucket_of(name: str) -> str:
    """The first bucket whose marker occurs in the op name, else 'other'."""
    for bucket, marks in BUCKETS:
        if any(name == m or name.startswith(m) or m in name for m in marks):
            return bucket
    return "other"


def step_profile(recipe: Recipe, model_overrides: dict[str, Any], steps: int = 4) -> dict[str, Any]:
    """Profile `steps` plain-loop steps (after 2 warm-up steps) and group self CPU time."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        plain_step_seconds(recipe, steps + 2, model_overrides=model_overrides)
    # Leaf ops only: self time, so nothing is counted twice.
    totals: dict[str, float] = {}
    for evt in prof.key_averages():
        if evt.key.startswith(("aten::", "Scaled")) or "scaled_dot_product" in evt.key:
            totals[bucket_of(evt.key)] = (
                totals.get(bucket_of(evt.key), 0.0) + evt.self_cpu_time_total
            )
    all_us = sum(evt.self_cpu_time_total for evt in prof.key_averages())
    totals["other"] = totals.get("other", 0.0) + all_us - sum(totals.values())
    cfg = ModelConfig.from_dict({**recipe.model, **model_overrides})
    with torch.device("meta"):
        n = num_params(Transformer(cfg), exclude_embeddings=True)
    matmul_flops = 6.0 * n * recipe.tokens_per_step * (steps + 2)
    matmul_s = totals.get(BUCKETS[0][0], 0.0) / 1e6
    return {
        "shares": {k: v / all_us for k, v in sorted(totals.items(), key=lambda kv: -kv[1])},
        "total_s": all_us / 1e6,
        "matmul_gflops": matmul_flops / matmul_s / 1e9 if matmul_s else float("nan"),
    }
