"""Run the model's probe path on a probe batch, in chunks, and gather the result on the CPU
(or, for a probe measured on the accelerator, where the model runs).

Every metric reads the tensors that this returns, so the training callback, the
reanalysis script and the pretrained-model analysis measure the same thing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from sinklab.model.probe import NameFilter, ProbeOutput, name_filter


@contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no gradients for the block; the model's previous mode comes back after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def capture(
    model: nn.Module,
    input_ids: torch.Tensor,
    *,
    batch_size: int = 25,
    names: NameFilter = None,
    device: torch.device | str | None = None,
    keep_on_device: bool = False,
    keep_logits: bool = True,
) -> ProbeOutput:
    """`model.forward_probe` over `input_ids` [N, T] in chunks of `batch_size` windows.

    Each chunk's tensors move to the CPU before the next runs, so only one chunk's
    activations sit on the accelerator. `names` (None, names/prefixes or a predicate)
    selects what is kept; `device` is where the chunks run (default: the model's device;
    the model itself is not moved). `keep_on_device` leaves the tensors where they were
    computed, for a measurement on the accelerator (`callbacks.probe.measure_on: device`):
    no host copies, and the metric maths on the GPU. `keep_logits=False` keeps an empty
    [N, T, 0] tensor in their place: no metric reads them, and for a 262k-token vocabulary
    (Gemma 3) 100 windows of 64 tokens would hold 6.7 GB of logits.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must be [N, T], got shape {tuple(input_ids.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    run_on = torch.device(device) if device is not None else model_device(model)
    keep = name_filter(names)
    gather_on = run_on if keep_on_device else torch.device("cpu")
    chunks: list[ProbeOutput] = []
    with eval_mode(model):
        for start in range(0, input_ids.shape[0], batch_size):
            ids = input_ids[start : start + batch_size].to(run_on)
            out = model.forward_probe(ids, names=names)
            cache = {k: v.detach().to(gather_on) for k, v in out.cache.items() if keep(k)}
            chunks.append(
                ProbeOutput(
                    logits=(out.logits if keep_logits else out.logits[..., :0])
                    .detach()
                    .to(gather_on),
                    cache=cache,
                    n_layers=out.n_layers,
                    extra_slots=tuple(out.extra_slots),
                    normalised=out.normalised,
                    causal=getattr(out, "causal", True),
                )
            )
    if not chunks:
        raise ValueError("input_ids holds no windows")
    first = chunks[0]
    if len(chunks) == 1:
        return first
    return ProbeOutput(
        logits=torch.cat([c.logits for c in chunks], dim=0),
        cache={k: torch.cat([c.cache[k] for c in chunks], dim=0) for k in first.cache},
        n_layers=first.n_layers,
        extra_slots=first.extra_slots,
        normalised=first.normalised,
        causal=first.causal,
    )
