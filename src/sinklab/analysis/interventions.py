"""Two published interventions at inference, run through the editing recorder: what the
model's next-token perplexity on the probe set becomes when the massive activations or the
attention sink are taken away.

- **massive_zero / massive_mean** (Sun et al. 2024, "Massive Activations in Large Language
  Models"): the massive activations set to zero, or to their mean over the probe set. Their
  paper finds zero catastrophic and the mean harmless (LLaMA2-7B).
- **no_sink** (the question Barbero et al. 2025 ask of the BOS sink): no query may attend to
  position 0 (the first token of each window; BOS when the probe set has one), per layer and
  in all layers at once.

Rows (layer, head, metric, value), head always -1: `intervention/none/ppl` (the unedited
model, from the probe's own logits: no extra forward), and for each intervention
`intervention/<what>/ppl` with `intervention/<what>/ppl_ratio`, its ratio to the unedited
perplexity on the same tokens. Perplexity is exp of the mean next-token cross-entropy over
every position t -> t + 1 of every probe window. Each intervention is one forward over the
probe set (no_sink: one per layer, plus one for all layers at once); an encoder has no
next-token perplexity and gets no rows.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from sinklab.analysis.activations import row_median
from sinklab.analysis.capture import eval_mode, model_device
from sinklab.analysis.config import MetricsConfig
from sinklab.configs import from_mapping
from sinklab.errors import check, check_choice
from sinklab.model.edits import replace_with, zero_at
from sinklab.model.probe import ProbeOutput
from sinklab.model.recorder import Edit, Edits
from sinklab.runs.schedule import is_scheduled

log = logging.getLogger(__name__)

InterventionKind = Literal["massive_zero", "massive_mean", "no_sink"]
KINDS: tuple[str, ...] = ("massive_zero", "massive_mean", "no_sink")
INTERVENTIONS_KEY = "callbacks.probe.interventions"
COLUMNS = ["layer", "head", "metric", "value"]


@dataclass(frozen=True)
class InterventionConfig:
    """`callbacks.probe.interventions`: which interventions run, and when.

    Like the W8A8 evaluation they run at the first and last steps and at the probe steps
    from `from_step` on that are powers of two, and their time is counted apart from the
    probes' so the probe share is not raised.
    """

    enabled: bool = False
    from_step: int = 256
    kinds: tuple[InterventionKind, ...] = ("massive_zero", "massive_mean", "no_sink")

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        check(
            self.from_step >= 0,
            f"{INTERVENTIONS_KEY}.from_step",
            f"must be >= 0, got {self.from_step}",
        )
        for kind in self.kinds:
            check_choice(f"{INTERVENTIONS_KEY}.kinds", kind, KINDS)

    @classmethod
    def from_dict(cls, values: Any, section: str = INTERVENTIONS_KEY) -> InterventionConfig:
        return from_mapping(cls, values, section)

    def due(self, step: int, max_steps: int, log_spaced_until: int, every: int) -> bool:
        """The first and last steps, and the probe steps from `from_step` on that are powers
        of two."""
        if step in (0, max_steps):
            return True
        power = step >= self.from_step and step & (step - 1) == 0
        return power and is_scheduled(step, max_steps, log_spaced_until, every)


# -- perplexity ------------------------------------------------------------------------------


def next_token_nll(logits: torch.Tensor, ids: torch.Tensor) -> tuple[float, int]:
    """(sum of cross-entropies in float64, number of predictions) over positions t -> t + 1."""
    ce = F.cross_entropy(
        logits[:, :-1].reshape(-1, logits.shape[-1]).float(),
        ids[:, 1:].reshape(-1).to(logits.device),
        reduction="none",
    )
    return float(ce.double().sum()), int(ce.numel())


def perplexity(nll_sum: float, count: int) -> float:
    """exp(mean NLL); inf where that overflows (a diverged or badly broken model)."""
    mean = nll_sum / max(count, 1)
    return math.exp(mean) if mean < 709.0 else math.inf


def edited_nll(
    model: nn.Module,
    input_ids: torch.Tensor,
    edits_for: Callable[[int, int], Edits],
    *,
    batch_size: int,
    device: torch.device,
) -> tuple[float, int]:
    """One forward over `input_ids` in chunks, with `edits_for(start, stop)` (the edits for
    windows start..stop-1) applied; the summed next-token cross-entropy and its count."""
    total, count = 0.0, 0
    with eval_mode(model):
        for start in range(0, input_ids.shape[0], batch_size):
            ids = input_ids[start : start + batch_size].to(device)
            edits = edits_for(start, start + ids.shape[0])
            logits = model.forward_probe(ids, names=(), edits=edits).logits
            s, c = next_token_nll(logits, ids)
            total, count = total + s, count + c
    return total, count


# -- massive activations ---------------------------------------------------------------------


@dataclass
class MassiveEntries:
    """Where the massive activations are edited: `layer`, the mask [N, T, d] of the entries
    there, and `means` [T, d], the mean massive value of each (position, channel) over the
    windows where it is massive (0 where it never is)."""

    layer: int
    mask: torch.Tensor
    means: torch.Tensor


def massive_mask(h: torch.Tensor, massive_abs: float, massive_rel: float) -> torch.Tensor:
    """Sun et al.'s rule on one layer's residual stream h [N, T, d]: |a| > massive_abs and
    |a| >= massive_rel x the window's median |h| (the lower median, as `massive/sun_count`)."""
    N, T, d = h.shape
    mag = h.detach().float().abs()
    median = row_median(mag.reshape(N, T * d))
    return (mag > massive_abs) & (mag >= massive_rel * median[:, None, None])


def find_massive(
    probe: ProbeOutput, massive_abs: float = 100.0, massive_rel: float = 1000.0
) -> MassiveEntries | None:
    """The layer where the massive activations appear, and their entries there (None when no
    layer has any).

    The layer is the first whose count of entries over the probe set reaches half the largest
    count of any layer: Sun et al. edit where the massive activations first appear, and this
    keeps a stray precursor that meets the rule in a few windows of an early layer (SmolLM2
    has one) from being taken for their appearance. The entries are those meeting the rule
    in that layer, window by window.
    """
    masks = []
    for layer in range(probe.n_layers):
        name = f"blocks.{layer}.resid_post"
        if name not in probe:
            raise KeyError(f"interventions need {name} in the probe (capture it with names=None)")
        masks.append(massive_mask(probe[name], massive_abs, massive_rel))
    counts = [int(m.sum()) for m in masks]
    if not counts or max(counts) == 0:
        return None
    layer = next(i for i, c in enumerate(counts) if 2 * c >= max(counts))
    mask = masks[layer]
    h = probe[f"blocks.{layer}.resid_post"].detach().float()
    per_entry = mask.sum(0)
    sums = torch.where(mask, h, torch.zeros_like(h)).sum(0)
    means = torch.where(per_entry > 0, sums / per_entry.clamp_min(1), torch.zeros_like(sums))
    return MassiveEntries(layer=layer, mask=mask, means=means)


def massive_edits(found: MassiveEntries, kind: str) -> Callable[[int, int], Edits]:
    """(start, stop) -> the edit of windows start..stop-1 at the massive layer: its massive
    entries set to zero (`massive_zero`) or to their mean over the probe set (`massive_mean`)."""
    name = f"blocks.{found.layer}.resid_post"

    def edits_for(start: int, stop: int) -> Edits:
        mask = found.mask[start:stop]
        if kind == "massive_zero":
            return {name: zero_at(mask)}
        return {name: replace_with(found.means, mask)}

    return edits_for


# -- the sink ----------------------------------------------------------------------------------


def no_sink(n_slots: int, normalised: bool) -> Edit:
    """An edit of `attn.pattern` [N, H, T, n_slots + T] that removes key position 0 (column
    `n_slots`: the extra slots and sink tokens come first) from every row.

    Normalised attention (softmax family, sigmoid_norm): the rest of each row is divided by
    its sum, which equals a softmax with that key masked. A row with nothing left (query 0
    of a causal model without extra slots sees only key 0) keeps its weights: a normalised
    row must sum to one, and attending to itself is all query 0 can do.
    Attention that is not normalised (sigmoid, relu, clipped_softmax): the column is set to
    zero and the rest left as it is, since there is no normalisation to restore; query 0
    then attends to nothing.
    """

    def edit(pattern: torch.Tensor) -> torch.Tensor:
        cut = pattern.float().clone()
        cut[..., n_slots] = 0.0
        if normalised:
            total = cut.sum(-1, keepdim=True)
            cut = torch.where(total > 0, cut / total.clamp_min(1e-30), pattern.float())
        return cut.to(pattern.dtype)

    return edit


# -- the rows -----------------------------------------------------------------------------------


def intervention_rows(
    model: nn.Module,
    probe_set: Any,
    probe: ProbeOutput,
    cfg: InterventionConfig,
    *,
    batch_size: int,
    device: torch.device | str | None = None,
    metrics: MetricsConfig | None = None,
) -> pd.DataFrame:
    """The rows of the interventions in `cfg.kinds` on `probe_set.input_ids`, given the
    unedited `probe` of the same windows (its logits and every layer's `resid_post`).

    Massive activations follow the project's definition (`metrics.massive_abs` and
    `massive_rel`, `massive/sun_count`), found and edited in the residual stream after the
    block where they appear (`find_massive`); `intervention/massive/n_entries` counts the
    entries edited (at that layer; layer -1 and 0 when the model has none, and then both
    massive interventions report the unedited perplexity and a ratio of 1 without a forward).
    `massive_mean` writes each entry's mean over the probe set: the mean of that (position,
    channel) over the windows where it is massive (Sun et al. take each massive activation's
    mean over many sequences; pooling a whole channel would write the first token's value,
    often ten times larger, over a smaller one at a later position). `no_sink` rows are at layer l for the sink
    removed in layer l alone and at layer -1 for all layers at once (see `no_sink`).
    """
    if not probe.causal:
        log.info("interventions skipped: an encoder (model.causal=false) has no next-token ppl")
        return pd.DataFrame(columns=COLUMNS)
    metrics = metrics or MetricsConfig()
    ids = probe_set.input_ids
    run_on = torch.device(device) if device is not None else model_device(model)
    if probe.logits.shape[-1]:
        base_sum, count = next_token_nll(probe.logits, ids)
    else:  # captured without logits (the probe pass): one unedited forward, chunk by chunk
        base_sum, count = edited_nll(
            model, ids, lambda start, stop: {}, batch_size=batch_size, device=run_on
        )
    base = perplexity(base_sum, count)
    rows: list[tuple[int, int, str, float]] = [(-1, -1, "intervention/none/ppl", base)]

    def add(layer: int, what: str, nll: tuple[float, int] | None) -> None:
        ppl = base if nll is None else perplexity(*nll)
        rows.append((layer, -1, f"intervention/{what}/ppl", ppl))
        rows.append((layer, -1, f"intervention/{what}/ppl_ratio", ppl / base))

    def run(edits_for: Callable[[int, int], Edits]) -> tuple[float, int]:
        return edited_nll(model, ids, edits_for, batch_size=batch_size, device=run_on)

    massive_kinds = [k for k in ("massive_zero", "massive_mean") if k in cfg.kinds]
    if massive_kinds:
        found = find_massive(probe, metrics.massive_abs, metrics.massive_rel)
        layer = found.layer if found else -1
        n_entries = float(found.mask.sum()) if found else 0.0
        rows.append((layer, -1, "intervention/massive/n_entries", n_entries))
        for kind in massive_kinds:  # none found: the unedited perplexity, no forward
            add(layer, kind, run(massive_edits(found, kind)) if found else None)

    if "no_sink" in cfg.kinds:
        edit = no_sink(len(probe.extra_slots), probe.normalised)
        for layer in range(probe.n_layers):
            add(layer, "no_sink", run(lambda a, b, i=layer: {f"blocks.{i}.attn.pattern": edit}))
        every = {f"blocks.{i}.attn.pattern": edit for i in range(probe.n_layers)}
        add(-1, "no_sink", run(lambda a, b: every))
    return pd.DataFrame(rows, columns=COLUMNS)
