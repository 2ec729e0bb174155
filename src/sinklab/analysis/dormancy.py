"""Active and dormant heads (Guo et al. 2024, "Active-Dormant Attention Heads").

On Bigram-Backcopy a head is needed only at trigger tokens; elsewhere it parks its
attention on BOS (position 0), whose value shrinks (value-state drain) while BOS's residual
norm grows (residual-state peak). These functions measure that, label each head at each
query position, and check the label by intervention.

Dormancy label (per window n, layer l, head h, query position t):
    dormant  iff  A[n, l, h, t, 0] >= dormant_threshold (default 0.5)
i.e. the head puts at least half of its attention on BOS, so its output is mostly BOS's
(drained) value. Everything else is active. For attention that is not normalised the proxy
score (sinks.proxy_scores) is used. Position 0 sees only itself, so it is usually labelled
dormant; the fractions below count queries t >= 1 only.
"""

from __future__ import annotations

import math

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from sinklab.analysis.capture import eval_mode, model_device
from sinklab.model.edits import zero_at


def bos_attention(tokens: torch.Tensor) -> torch.Tensor:
    """Attention on key 0 per query: [N, H, T, T] token columns -> [N, H, T]."""
    return tokens[..., 0].float()


def split_by_trigger(
    values: torch.Tensor, trigger_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean of values [N, H, T] over trigger and over non-trigger queries t >= 1, per head.

    NaN for a group with no positions (a probe batch without triggers).
    """
    trig = trigger_mask.to(torch.bool).clone()
    trig[:, 0] = False
    other = ~trigger_mask.to(torch.bool)
    other[:, 0] = False

    def group_mean(mask: torch.Tensor) -> torch.Tensor:
        m = mask[:, None, :].float()
        count = m.sum((0, 2))
        total = (values * m).sum((0, 2))
        return torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, math.nan))

    return group_mean(trig), group_mean(other)


def dormancy_labels(bos_attn: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Dormant (True) where the attention on BOS is at least `threshold`; bos_attn [..., T]."""
    return bos_attn >= threshold


def dormant_fraction(labels: torch.Tensor) -> torch.Tensor:
    """Share of queries t >= 1 labelled dormant, per head: [N, H, T] -> [H]."""
    return labels[..., 1:].float().mean((0, 2))


def _next_token_loss(
    logits: torch.Tensor, ids: torch.Tensor, loss_mask: torch.Tensor | None
) -> tuple[float, float]:
    """(sum of cross-entropies, number of predictions) for positions t -> t+1."""
    ce = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        ids[:, 1:].reshape(-1),
        reduction="none",
    ).view(ids.shape[0], -1)
    if loss_mask is not None:
        keep = loss_mask[:, : ce.shape[1]].to(ce.device, torch.bool)
        return float(ce[keep].double().sum()), float(keep.sum())
    return float(ce.double().sum()), float(ce.numel())


def dormancy_intervention(
    model: nn.Module,
    input_ids: torch.Tensor,
    labels: torch.Tensor,
    *,
    loss_mask: torch.Tensor | None = None,
    heads: list[tuple[int, int]] | None = None,
    batch_size: int = 25,
    device: torch.device | str | None = None,
) -> pd.DataFrame:
    """Zero each head's output where it is labelled dormant, then where it is active, and
    report the change of the mean next-token loss each time.

    labels [N, L, H, T] bool (True = dormant). loss_mask [N, T] or [N, T-1] marks the
    predicting positions t (of token t+1) that count; None counts all. `heads` limits the
    (layer, head) pairs tried (default: all). Zeroes through the editing recorder:
    `model.forward_probe(ids, names=(), edits={"blocks.{l}.attn.z": zero_at(mask)})`, the
    head outputs before the output projection (the base run is the same call without edits;
    keeping no names, every layer takes the fused attention path as training does).

    Rows (layer, head, metric, value): `dormancy/delta_loss_dormant` and
    `dormancy/delta_loss_active` per head (the second should be the larger if the label is
    right), `dormancy/zeroed_frac_dormant` (share of positions zeroed in the first run), and
    `dormancy/base_loss` at layer = head = -1. Costs 2 forwards per head plus one.
    """
    N, L, H, T = labels.shape
    if input_ids.shape != (N, T):
        raise ValueError(
            f"input_ids {tuple(input_ids.shape)} does not match labels {tuple(labels.shape)}"
        )
    pairs = heads if heads is not None else [(layer, h) for layer in range(L) for h in range(H)]
    run_on = torch.device(device) if device is not None else model_device(model)

    def mean_loss(zero_where: torch.Tensor | None, layer: int) -> float:
        total, count = 0.0, 0.0
        for start in range(0, N, batch_size):
            ids = input_ids[start : start + batch_size].to(run_on)
            edits = None
            if zero_where is not None:
                zero = zero_where[start : start + batch_size, :, :, None].to(run_on)
                edits = {f"blocks.{layer}.attn.z": zero_at(zero)}
            logits = model.forward_probe(ids, names=(), edits=edits).logits
            mask = None if loss_mask is None else loss_mask[start : start + batch_size]
            s, c = _next_token_loss(logits, ids, mask)
            total, count = total + s, count + c
        return total / max(count, 1.0)

    rows: list[tuple[int, int, str, float]] = []
    with eval_mode(model):
        base = mean_loss(None, 0)
        rows.append((-1, -1, "dormancy/base_loss", base))
        for layer, head in pairs:
            dormant = torch.zeros(N, H, T, dtype=torch.bool)
            dormant[:, head] = labels[:, layer, head].cpu()
            active = torch.zeros(N, H, T, dtype=torch.bool)
            active[:, head] = ~labels[:, layer, head].cpu()
            rows.append(
                (layer, head, "dormancy/delta_loss_dormant", mean_loss(dormant, layer) - base)
            )
            rows.append(
                (layer, head, "dormancy/delta_loss_active", mean_loss(active, layer) - base)
            )
            rows.append(
                (
                    layer,
                    head,
                    "dormancy/zeroed_frac_dormant",
                    float(labels[:, layer, head].float().mean()),
                )
            )
    return pd.DataFrame(rows, columns=["layer", "head", "metric", "value"])
