"""Activation outliers at the inputs of the linear layers: what breaks int8 quantisation.

A per-tensor int8 quantiser spends its 255 levels on the range [min, max]; one token whose
activations are 1000x the others' (the sink token's massive activation) leaves the rest a
handful of levels. These metrics say how bad that is, site by site, on the one probe path
(`measure` calls `outlier_rows` on the probe it already holds: no extra forward pass).

Sites (one tensor [N, T, d] per layer each):
    qkv_in       input of attn.wq / wk / wv (and the gate of gated attention)
    o_in         input of attn.wo (the concatenated head outputs, `attn.z`)
    gate_up_in   input of mlp.w_gate / w_up
    down_in      input of mlp.w_down (`mlp.hidden`)
    resid_post   the block's output (the residual stream)

Definitions: kurtosis is Bondarenko et al.'s mu4 / sigma^4 of one sample's flattened
features (3 for a Gaussian, not the excess); the token-wise maximum m_t = max_c |x[t, c]|;
PrefixQuant's ratio top-1 / median over a window's m_t and its outlier tokens m_t > eta x
median (eta = 64). Medians are lower medians (torch.median).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from sinklab.errors import check
from sinklab.model.probe import ProbeOutput

SITES: tuple[str, ...] = ("qkv_in", "o_in", "gate_up_in", "down_in", "resid_post")


def check_eta(eta: float, key: str = "metrics.outlier_eta") -> None:
    """eta <= 1 would call every token an outlier: a one-line ConfigError naming `key`."""
    check(float(eta) > 1.0, key, f"must be > 1, got {eta}")


# -- the maths (pure functions on tensors) ----------------------------------------------------


def kurtosis(x: torch.Tensor) -> torch.Tensor:
    """mu4 / sigma^4 per sample (dim 0) over all other dims flattened; NaN for a constant sample."""
    flat = x.detach().reshape(x.shape[0], -1).float()
    # fp32 throughout (torch sums fp32 pairwise, so the means stay accurate): in fp64 this
    # group cost several probe passes.
    sq = (flat - flat.mean(1, keepdim=True)).square()
    var = sq.mean(1).double()
    out = sq.square().mean(1).double() / var.square()
    return torch.where(var > 0, out, torch.full_like(out, float("nan")))


def token_max(x: torch.Tensor) -> torch.Tensor:
    """m[n, t] = max_c |x[n, t, c]|: the largest magnitude each token carries ([N, T, d] -> [N, T])."""
    return x.detach().float().abs().amax(dim=-1)


def max_over_median(tmax: torch.Tensor) -> torch.Tensor:
    """Per window, max_t m_t / median_t m_t ([N, T] -> [N]): PrefixQuant's top-1 / median."""
    median = tmax.median(dim=1).values
    return tmax.amax(dim=1) / median.clamp_min(1e-30)


def outlier_mask(tmax: torch.Tensor, eta: float) -> torch.Tensor:
    """True where m_t > eta x the window's median m_t ([N, T] -> bool [N, T]); PrefixQuant's rule."""
    check_eta(eta, "eta")
    median = tmax.median(dim=1).values
    return tmax > eta * median[:, None]


STAT_NAMES: tuple[str, ...] = (
    "max_abs",
    "kurtosis_mean",
    "kurtosis_max",
    "token_max_over_median",
    "n_outlier_tokens",
)


def site_stats(x: torch.Tensor, eta: float) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The scalar outlier metrics of one site's tensor x [N, T, d] (see the module docstring),
    as 0-d tensors on x's device in `STAT_NAMES` order, and its outlier-token mask [N, T].
    `kurtosis_max` is NaN when any window's kurtosis is (a constant window)."""
    tmax = token_max(x)
    kurt = kurtosis(x)
    mask = outlier_mask(tmax, eta)
    stats = {
        "max_abs": tmax.max(),
        "kurtosis_mean": kurt.nanmean(),
        "kurtosis_max": kurt.max(),
        "token_max_over_median": max_over_median(tmax).mean(),
        "n_outlier_tokens": mask.sum(1).float().mean(),
    }
    return stats, mask


def top_counts(counts: torch.Tensor, top: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(labels, counts) of the `top` largest entries of `counts` [K] (a label is an index),
    largest first and ties broken by the smaller label, so the order is deterministic. Zero
    counts are kept: the caller drops them on the host, where the rows are built."""
    values, labels = torch.sort(counts, descending=True, stable=True)
    return labels[:top], values[:top]


# -- which tensor is each site ---------------------------------------------------------------


def site_tensors(
    probe: ProbeOutput, layer: int, model: nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """The [N, T, d] tensor of each site of `layer` that the probe (and model) can give.

    `o_in`, `down_in` and `resid_post` are in the cache. The q/k/v and gate/up inputs are a
    norm's output, which the probe does not keep: they are recomputed here by the model's own
    norm modules from the captured norm inputs (`Block.attn_input` / `mlp_input`; the
    reordered placement has no input norm, so there it is the stream itself), or read as the block input
    (post-norm, where attention sees the raw residual stream). No model: those sites are skipped.
    """
    cache = probe.cache
    out: dict[str, torch.Tensor] = {}
    block = _block(model, layer)
    if block is not None:
        attn_in = cache.get(f"blocks.{layer}.norm_attn.input")
        with torch.no_grad():
            if getattr(block, "pre_norm", True):
                if attn_in is not None:
                    out["qkv_in"] = _apply(block.attn_input, attn_in)
                mlp_in = cache.get(f"blocks.{layer}.norm_mlp.input")
                if mlp_in is not None and getattr(block, "has_mlp", False):
                    out["gate_up_in"] = _apply(block.mlp_input, mlp_in)
            else:
                before = cache.get("embed" if layer == 0 else f"blocks.{layer - 1}.resid_post")
                if before is not None:
                    out["qkv_in"] = before
                if attn_in is not None and getattr(block, "has_mlp", False):
                    out["gate_up_in"] = _apply(block.norm_attn, attn_in)
    z = cache.get(f"blocks.{layer}.attn.z")
    if z is not None:
        N, H, T, hd = z.shape
        out["o_in"] = z.transpose(1, 2).reshape(N, T, H * hd)
    for site, name in (("down_in", "mlp.hidden"), ("resid_post", "resid_post")):
        x = cache.get(f"blocks.{layer}.{name}")
        if x is not None:
            out[site] = x
    return {s: out[s] for s in SITES if s in out}


def _block(model: nn.Module | None, layer: int) -> nn.Module | None:
    blocks = getattr(model, "blocks", None)
    if blocks is None or layer >= len(blocks) or not hasattr(blocks[layer], "norm_attn"):
        return None
    return blocks[layer]


def _apply(norm: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Run a block's input norm (a bound `Block.attn_input` / `mlp_input`) on a captured tensor
    where the block lives, and bring the result back to the capture's device (the CPU copy, or
    the accelerator when the probe is measured there)."""
    owner = getattr(norm, "__self__", norm)
    device = next(owner.parameters(), torch.empty(0)).device
    return norm(x.to(device)).float().to(x.device)


# -- rows -------------------------------------------------------------------------------------


def outlier_rows(
    probe: ProbeOutput,
    *,
    model: nn.Module | None = None,
    input_ids: torch.Tensor | None = None,
    eta: float = 64.0,
    top: int = 3,
) -> list[tuple[int, int, str, float]]:
    """Rows (layer, -1, metric, value) of every site of every layer, plus the model row
    `outliers/{site}/max_abs` (the largest over layers).

    Per site and layer: `max_abs`, `kurtosis_mean` / `kurtosis_max` over windows,
    `token_max_over_median` (mean over windows), `n_outlier_tokens` (mean per window); then
    for the `top` most frequent outlier positions `position/rank_{i}` (the position) and
    `position_share/rank_{i}` (share of windows with an outlier token there), and with
    `input_ids` the same for token ids: `token/rank_{i}` and `token_share/rank_{i}` (share of
    all outlier tokens of that site and layer that carry this id).

    Everything is computed where the probe's tensors are and read back in one copy at the
    end, so a probe measured on the GPU does not wait on the host once per value.
    """
    check_eta(eta)
    vocab = int(input_ids.max()) + 1 if input_ids is not None and input_ids.numel() else 0
    plan: list[tuple[int, str, int, int, int]] = []  # layer, site, N, positions, token ranks
    parts: list[torch.Tensor] = []
    for layer in range(probe.n_layers):
        for site, x in site_tensors(probe, layer, model).items():
            stats, mask = site_stats(x, eta)
            N, T = mask.shape
            parts.append(torch.stack([stats[name].double() for name in STAT_NAMES]))
            positions = top_counts(mask.sum(0), top)
            parts += [t.double() for t in positions]
            n_tokens = 0
            if input_ids is not None and tuple(input_ids.shape) == (N, T):
                ids = input_ids.to(mask.device).reshape(-1)
                per_id = torch.zeros(vocab, dtype=torch.long, device=mask.device)
                per_id.scatter_add_(0, ids, mask.reshape(-1).long())
                tokens = top_counts(per_id, top)
                parts += [t.double() for t in tokens] + [mask.sum().double().reshape(1)]
                n_tokens = len(tokens[0])
            plan.append((layer, site, N, len(positions[0]), n_tokens))
    flat = torch.cat([p.to(parts[0].device) for p in parts]).cpu().tolist() if parts else []
    return _rows_from(flat, plan)


def _rows_from(
    flat: list[float], plan: list[tuple[int, str, int, int, int]]
) -> list[tuple[int, int, str, float]]:
    """`outlier_rows`' rows from its one host copy, in the order the sites were measured."""
    rows: list[tuple[int, int, str, float]] = []
    peaks: dict[str, float] = {}
    at = 0

    def take(n: int) -> list[float]:
        nonlocal at
        at += n
        return flat[at - n : at]

    for layer, site, N, n_pos, n_tok in plan:
        prefix = f"outliers/{site}"
        stats = take(len(STAT_NAMES))
        rows.extend(
            (layer, -1, f"{prefix}/{name}", v) for name, v in zip(STAT_NAMES, stats, strict=True)
        )
        peaks[site] = max(peaks.get(site, float("-inf")), stats[0])
        labels, counts = take(n_pos), take(n_pos)
        found = [(pos, count) for pos, count in zip(labels, counts, strict=True) if count > 0]
        for i, (pos, count) in enumerate(found):
            rows.append((layer, -1, f"{prefix}/position/rank_{i}", float(pos)))
            rows.append((layer, -1, f"{prefix}/position_share/rank_{i}", count / N))
        if n_tok:
            labels, counts = take(n_tok), take(n_tok)
            (total,) = take(1)
            found = [(tok, count) for tok, count in zip(labels, counts, strict=True) if count > 0]
            for i, (tok, count) in enumerate(found):
                rows.append((layer, -1, f"{prefix}/token/rank_{i}", float(tok)))
                rows.append((layer, -1, f"{prefix}/token_share/rank_{i}", count / total))
    rows.extend((-1, -1, f"outliers/{site}/max_abs", value) for site, value in peaks.items())
    return rows
