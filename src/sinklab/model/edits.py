"""Small edits for `Transformer.forward_probe(ids, edits={hook name: edit})`.

An edit is a function from the tensor at a hook point (token positions only, the shape
`probe.py` documents) to a tensor of the same shape. These build the common ones; any
function of that shape works. Masks and tensors are moved to the edited tensor's device
and dtype, so an edit built on the CPU works on a model on the accelerator.
"""

from __future__ import annotations

import torch

from sinklab.model.recorder import Edit


def scale(s: float | torch.Tensor) -> Edit:
    """Multiply by `s` (a number, or a tensor broadcastable to the hook's shape). Scaling by
    1 returns the same values bit for bit."""

    def edit(t: torch.Tensor) -> torch.Tensor:
        return t * torch.as_tensor(s, dtype=t.dtype, device=t.device)

    return edit


def zero_at(mask: torch.Tensor) -> Edit:
    """Set the entries where `mask` (bool, broadcastable to the hook's shape) is True to 0,
    leave the rest as they are (an ablation: a NaN under the mask becomes 0 too)."""

    def edit(t: torch.Tensor) -> torch.Tensor:
        where = mask.to(device=t.device, dtype=torch.bool)
        return torch.where(where, torch.zeros((), dtype=t.dtype, device=t.device), t)

    return edit


def replace_with(value: torch.Tensor, mask: torch.Tensor | None = None) -> Edit:
    """Replace the tensor by `value` (broadcastable to the hook's shape), or only the
    entries where `mask` is True (e.g. a mean-ablation of chosen entries)."""

    def edit(t: torch.Tensor) -> torch.Tensor:
        new = torch.broadcast_to(value.to(device=t.device, dtype=t.dtype), t.shape)
        if mask is None:
            return new.clone()
        return torch.where(mask.to(device=t.device, dtype=torch.bool), new, t)

    return edit
