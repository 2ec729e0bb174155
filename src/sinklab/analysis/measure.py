"""`measure`: the single code path from a `ProbeOutput` to tidy metric rows.

The training callback, the reanalysis script and the pretrained-model analysis all call
this, so a number means the same wherever it was computed. It walks the layers once
(each layer's tensors are vectorised over windows and heads) and asks each metric module
for its values; this module only chooses what to compute and shapes the rows.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from sinklab.analysis import activations, dormancy, frames, names, outliers, sinks
from sinklab.analysis.config import MetricsConfig
from sinklab.errors import check
from sinklab.model.probe import ProbeOutput

COLUMNS = ["layer", "head", "metric", "value"]
_GLU_MLPS = ("swiglu", "geglu")


class _Rows:
    """Collects rows in order; per-head metrics get their layer and model means added.

    Tensor values stay where they were computed (the GPU, when the probe is measured there)
    until `frame()`, which moves them all to the host in one copy: no host sync per metric.
    """

    def __init__(self) -> None:
        # each part: ready rows, or (layer, heads, metric, tensor) whose values are pending
        self._parts: list[list[tuple[int, int, str, float]] | _Pending] = []
        self._per_head: dict[str, list[torch.Tensor]] = defaultdict(list)

    def add(self, layer: int, heads: list[int], metric: str, values: torch.Tensor) -> None:
        """One row per entry of `values` [len(heads)], kept on its device until `frame()`."""
        self._parts.append(_Pending(layer, heads, metric, values.detach().double().reshape(-1)))

    def extend(self, rows: list[tuple[int, int, str, float]]) -> None:
        self._parts.append(list(rows))

    def heads(self, metric: str, layer: int, values: torch.Tensor, aggregate: bool = True) -> None:
        """One row per head, plus the layer mean; the model mean is added in `frame()`."""
        vals = values.detach().double().reshape(-1)
        self._parts.append(_Pending(layer, list(range(vals.shape[0])), metric, vals))
        if aggregate:
            self._parts.append(_Pending(layer, [-1], metric, _nanmean(vals)))
            self._per_head[metric].append(vals)

    def layer(self, metric: str, layer: int, value: float | torch.Tensor) -> None:
        if isinstance(value, torch.Tensor):
            self.add(layer, [-1], metric, value)
        else:
            self.extend([(layer, -1, metric, float(value))])

    def model(self, metric: str, value: float) -> None:
        self.extend([(-1, -1, metric, float(value))])

    def frame(self) -> pd.DataFrame:
        for metric, parts in self._per_head.items():
            self.add(-1, [-1], metric, _nanmean(torch.cat(parts)))
        pending = [p for p in self._parts if isinstance(p, _Pending)]
        flat = (
            torch.cat([p.values.to(pending[0].values.device) for p in pending]).cpu().tolist()
            if pending
            else []
        )
        rows: list[tuple[int, int, str, float]] = []
        at = 0
        for part in self._parts:
            if isinstance(part, _Pending):
                n = len(part.heads)
                rows.extend(
                    (part.layer, h, part.metric, v)
                    for h, v in zip(part.heads, flat[at : at + n], strict=True)
                )
                at += n
            else:
                rows.extend(part)
        df = pd.DataFrame(rows, columns=COLUMNS)
        return df.astype(
            {"layer": "int64", "head": "int64", "metric": "string", "value": "float64"}
        )


@dataclass(frozen=True)
class _Pending:
    layer: int
    heads: list[int]
    metric: str
    values: torch.Tensor  # float64 [len(heads)], on the device it was computed on


def _nanmean(x: torch.Tensor) -> torch.Tensor:
    """The mean over the non-NaN entries, as a 1-element float64 tensor on x's device (NaN when
    all are NaN). On the CPU the mean of the compacted entries, bit for bit what every earlier
    table holds (`torch.nanmean` sums in another order); elsewhere `torch.nanmean`, which
    needs no host sync."""
    x = x.double()
    if x.device.type != "cpu":
        return torch.nanmean(x).reshape(1)
    ok = ~torch.isnan(x)
    if not bool(ok.any()):
        return torch.full((1,), math.nan, dtype=torch.float64)
    return x[ok].mean().reshape(1)


def _layer_tokens(probe: ProbeOutput, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(slots, token columns) of a layer's attention, as proxy scores when not normalised."""
    name = f"blocks.{layer}.attn.pattern"
    if name not in probe:
        return None
    pattern = probe[name].float()
    if not probe.normalised:
        pattern = sinks.proxy_scores(pattern)
    return sinks.split_slots(pattern, len(probe.extra_slots))


def _sink_rows(
    rows: _Rows,
    cfg: MetricsConfig,
    layer: int,
    slots: torch.Tensor,
    tokens: torch.Tensor,
    slot_names: tuple[str, ...],
    causal: bool = True,
) -> torch.Tensor:
    """Sink scores of one layer; returns the per-head alpha_0 (window mean) for the max curve.
    `causal` picks alpha's divisor: the queries that see key k (T - k, or all T in an encoder)."""
    T = tokens.shape[-1]
    alpha = sinks.alpha_gu(tokens, causal)  # [N, H, T]
    for k in range(min(cfg.early_keys, T)):
        rows.heads(f"sink/alpha/key_{k}", layer, alpha[..., k].mean(0))
    for k in cfg.sink_keys:
        if k >= T:
            continue
        name = names.SINK1 if k == 0 else f"sink/sink_pct/key_{k}"
        rows.heads(name, layer, 100.0 * (alpha[..., k] > cfg.eps).float().mean(0))
    rows.heads(
        names.SINK_RATIO,
        layer,
        100.0 * sinks.sink_ratio_hit(tokens, cfg.eps, cfg.sink_ratio_max_key).mean(0),
    )
    rows.heads(names.FIRST_TOKEN_MASS, layer, sinks.first_token_mass(tokens).mean(0))
    slot_alpha = sinks.slot_alpha(slots)  # [N, H, E]
    for e, slot in enumerate(slot_names):
        rows.heads(f"slot_mass/{slot}", layer, slot_alpha[..., e].mean(0))
        rows.heads(
            f"slot_sink_pct/{slot}", layer, 100.0 * (slot_alpha[..., e] > cfg.eps).float().mean(0)
        )
    alpha0 = alpha[..., 0].mean(0)
    rows.layer(names.ALPHA0_MAX, layer, alpha0.max())
    return alpha0


def _late_query_sink_rows(
    rows: _Rows, cfg: MetricsConfig, layer: int, tokens: torch.Tensor
) -> torch.Tensor:
    """The headline sink scores on the queries t >= cfg.query_start only, under
    `names.from_query_start`; returns that per-head alpha_0 (window mean) for the max curve."""
    T = tokens.shape[-2]
    check(
        cfg.query_start < T,
        "metrics.query_start",
        f"{cfg.query_start} leaves no query in a {T}-token probe window; use 0..{T - 1}",
    )
    start = cfg.query_start
    alpha0 = sinks.alpha0_from(tokens, start)  # [N, H]
    rows.heads(
        names.from_query_start(names.SINK1), layer, 100.0 * (alpha0 > cfg.eps).float().mean(0)
    )
    hit = sinks.sink_ratio_hit_from(tokens, cfg.eps, start, cfg.sink_ratio_max_key)
    rows.heads(names.from_query_start(names.SINK_RATIO), layer, 100.0 * hit.mean(0))
    ftm = sinks.first_token_mass_from(tokens, start)
    rows.heads(names.from_query_start(names.FIRST_TOKEN_MASS), layer, ftm.mean(0))
    per_head = alpha0.mean(0)
    rows.layer(names.from_query_start(names.ALPHA0_MAX), layer, per_head.max())
    return per_head


def _frame_rows(rows: _Rows, cfg: MetricsConfig, layer: int, tokens: torch.Tensor) -> int:
    """Frame measurements per head and on the head-averaged map (head = -1); returns the layer's class."""
    per_head = tokens.mean(0)  # [H, T, T], window-averaged
    maps = torch.cat([per_head, per_head.mean(0, keepdim=True)], dim=0)
    H = per_head.shape[0]
    heads = list(range(H)) + [-1]
    values = {
        **frames.graph_measures(maps, cfg.tau),
        **frames.spectral_measures(maps, cfg.top_column_frac),
    }
    r = frames.received_attention(maps)
    order, count, fallback = frames.reference_tokens(
        r, cfg.ref_threshold, cfg.ref_fallback_frac, cfg.ref_cap_frac
    )
    codes = frames.classify_frames(
        r,
        ref_threshold=cfg.ref_threshold,
        central_dominance=cfg.central_dominance,
        bidir_balance=cfg.bidir_balance,
        edge_frac=cfg.edge_frac,
    )
    values["frames/ref_count"] = count.float()
    values["frames/ref_fallback"] = fallback.float()
    values[names.FRAME_CLASS] = codes.float()
    for metric, v in values.items():
        rows.add(layer, heads, metric, v)
    n_logged = min(cfg.max_ref_logged, r.shape[-1])
    top_pos = order[:, :n_logged]
    # positions, masses, counts and classes cross to the host in one copy, not one per element
    mass = r.gather(1, top_pos)
    columns = [top_pos, mass, count[:, None], codes[:, None]]
    table = torch.cat([c.double() for c in columns], 1)
    host = table.cpu().tolist()
    for h, row in zip(heads, host, strict=True):
        positions, masses, n_refs = row[:n_logged], row[n_logged : 2 * n_logged], int(row[-2])
        for i in range(min(n_logged, n_refs)):
            rows.extend(
                [
                    (layer, h, f"frames/ref_position/rank_{i}", positions[i]),
                    (layer, h, f"frames/ref_mass/rank_{i}", masses[i]),
                ]
            )
    return int(host[-1][-1])  # the class of the head-averaged map (the last row)


def _massive_rows(rows: _Rows, cfg: MetricsConfig, probe: ProbeOutput, layer: int) -> None:
    resid = probe.cache.get(f"blocks.{layer}.resid_post")
    if resid is not None:
        for metric, value in activations.residual_extremes(
            resid, cfg.top_values, cfg.massive_abs, cfg.massive_rel
        ).items():
            rows.layer(metric, layer, value)
        rows.layer("massive/norm_ratio/resid", layer, activations.first_token_norm_ratio(resid))
    for kind in ("key", "value"):
        x = probe.cache.get(f"blocks.{layer}.attn.{kind[0]}")
        if x is not None:
            rows.heads(
                f"massive/norm_ratio/{kind}",
                layer,
                activations.first_token_norm_ratio(x),
                aggregate=True,
            )


def _spike_rows(
    rows: _Rows, cfg: MetricsConfig, probe: ProbeOutput, model: nn.Module, layer: int
) -> None:
    resid = probe.cache.get(f"blocks.{layer}.resid_post")
    if resid is None or cfg.spike_channels == 0:
        return
    mlp = model.blocks[layer].mlp
    channels = activations.top_channels(resid, cfg.spike_channels)
    with torch.no_grad():
        found = activations.spike_anatomy(
            mlp.w_gate.weight, mlp.w_up.weight, mlp.w_down.weight, channels
        )
    for metric, value in found.items():
        rows.layer(metric, layer, value)


def _dormancy_rows(
    rows: _Rows,
    cfg: MetricsConfig,
    probe: ProbeOutput,
    layer: int,
    tokens: torch.Tensor | None,
    trigger_mask: torch.Tensor | None,
) -> torch.Tensor | None:
    """BOS metrics of one layer; returns its labels [N, H, T] (None without attention)."""
    resid = probe.cache.get(f"blocks.{layer}.resid_post")
    if resid is not None:
        rows.layer(names.RESID_PEAK, layer, activations.first_token_norm_ratio(resid))
        # Guo et al. report the absolute norm (141 with Adam vs 20 with SGD after 10k steps);
        # the ratio alone starts at 1.5-1.7, since position 0 attends only to itself.
        bos_norm = resid[:, 0].detach().float().norm(dim=-1).mean()
        rows.layer(names.BOS_RESID_NORM, layer, bos_norm)
    v = probe.cache.get(f"blocks.{layer}.attn.v")
    if v is not None:
        rows.heads(names.VALUE_DRAIN, layer, activations.first_token_norm_ratio(v))
    if tokens is None:
        return None
    bos = dormancy.bos_attention(tokens)
    labels = dormancy.dormancy_labels(bos, cfg.dormant_threshold)
    rows.heads("dormancy/dormant_frac", layer, dormancy.dormant_fraction(labels))
    if trigger_mask is not None:
        trig, other = dormancy.split_by_trigger(bos, trigger_mask)
        rows.heads(names.BOS_ATTN_TRIGGER, layer, trig)
        rows.heads(names.BOS_ATTN_NONTRIGGER, layer, other)
        ftrig, fother = dormancy.split_by_trigger(labels.float(), trigger_mask)
        rows.heads("dormancy/dormant_frac_trigger", layer, ftrig)
        rows.heads("dormancy/dormant_frac_nontrigger", layer, fother)
    return labels


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run the metric maths on one torch thread.

    The tensors are small (a few thousand elements per head), and LAPACK's eigen solvers spin
    badly when their threads compete with a training job: on a loaded 2-core machine a
    128 x 128 `eigh` took 1.7 s with 2 threads and 3 ms with one.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def measure(
    probe: ProbeOutput,
    *,
    model: nn.Module | None = None,
    cfg: MetricsConfig = MetricsConfig(),  # noqa: B008 - frozen, so sharing is safe
    trigger_mask: torch.Tensor | None = None,
    bos_present: bool | None = None,
    input_ids: torch.Tensor | None = None,
    loss_mask: torch.Tensor | None = None,
) -> pd.DataFrame:
    """All enabled metric groups of `cfg` on one capture, as rows (layer, head, metric, value).

    Groups read only the tensors they need and are skipped when the probe lacks them.
    `model` is needed for the spike anatomy (its MLP weights) and, with `input_ids` and
    `cfg.intervention`, for the dormancy intervention. `trigger_mask` [N, T] (True at
    trigger positions) splits the BOS attention by query type. `bos_present` says whether
    position 0 is a BOS token; the dormancy group (all about BOS) runs only when it is
    True, or when it is None and a trigger mask is given (the Bigram-Backcopy probe set
    always starts with BOS). `loss_mask` selects the predictions the intervention scores.
    For an encoder (`probe.causal` False) sink scores average over all T queries (see
    `sinks`) and the dormancy intervention, a next-token loss, is skipped.
    """
    with _one_thread():
        return _measure(probe, model, cfg, trigger_mask, bos_present, input_ids, loss_mask)


def _measure(
    probe: ProbeOutput,
    model: nn.Module | None,
    cfg: MetricsConfig,
    trigger_mask: torch.Tensor | None,
    bos_present: bool | None,
    input_ids: torch.Tensor | None,
    loss_mask: torch.Tensor | None,
) -> pd.DataFrame:
    rows = _Rows()
    n_layers = probe.n_layers
    bos = bos_present if bos_present is not None else trigger_mask is not None
    do_dormancy = cfg.dormancy and bos
    spikes_ok = (
        cfg.spikes
        and model is not None
        and getattr(getattr(model, "cfg", None), "mlp", None) in _GLU_MLPS
    )
    if cfg.sinks:
        rows.model("sink/proxy_scores", 0.0 if probe.normalised else 1.0)

    alpha0_all: list[torch.Tensor] = []
    alpha0_late: list[torch.Tensor] = []  # alpha_0 on the queries t >= cfg.query_start
    layer_codes: list[int] = []
    labels: list[torch.Tensor | None] = []
    for layer in range(n_layers):
        split = _layer_tokens(probe, layer)
        slots, tokens = split if split is not None else (None, None)
        if tokens is not None and cfg.sinks:
            alpha0_all.append(
                _sink_rows(rows, cfg, layer, slots, tokens, probe.extra_slots, probe.causal)
            )
            if cfg.query_start > 0:
                alpha0_late.append(_late_query_sink_rows(rows, cfg, layer, tokens))
        q, k = probe.cache.get(f"blocks.{layer}.attn.q"), probe.cache.get(f"blocks.{layer}.attn.k")
        if cfg.qk and q is not None and k is not None:
            for metric, value in sinks.qk_geometry(q, k, probe.causal).items():
                rows.heads(metric, layer, value.mean(0))
        if cfg.massive:
            _massive_rows(rows, cfg, probe, layer)
        if spikes_ok:
            _spike_rows(rows, cfg, probe, model, layer)
        if cfg.frames and tokens is not None:
            layer_codes.append(_frame_rows(rows, cfg, layer, tokens))
        if do_dormancy:
            labels.append(_dormancy_rows(rows, cfg, probe, layer, tokens, trigger_mask))

    if cfg.outliers:
        rows.extend(
            outliers.outlier_rows(
                probe, model=model, input_ids=input_ids, eta=cfg.outlier_eta, top=cfg.outlier_top
            )
        )
    if alpha0_all:
        rows.model(names.ALPHA0_MAX, float(torch.cat(alpha0_all).max()))
    if alpha0_late:
        rows.model(names.from_query_start(names.ALPHA0_MAX), float(torch.cat(alpha0_late).max()))
    if layer_codes:
        rows.model(names.FRAME_CLASS, float(frames.model_frame(layer_codes)))
    out = rows.frame()

    have_labels = bool(labels) and all(lab is not None for lab in labels)
    if (
        do_dormancy
        and probe.causal  # the intervention scores next-token loss, which an encoder lacks
        and cfg.intervention
        and model is not None
        and input_ids is not None
        and have_labels
    ):
        stacked = torch.stack(labels, dim=1)  # [N, L, H, T]
        extra = dormancy.dormancy_intervention(
            model, input_ids, stacked, loss_mask=loss_mask, batch_size=cfg.intervention_batch_size
        )
        out = pd.concat([out, extra.astype(out.dtypes.to_dict())], ignore_index=True)
    return out
