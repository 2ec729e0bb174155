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

from collections import Counter

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


def site_stats(x: torch.Tensor, eta: float) -> tuple[dict[str, float], torch.Tensor]:
    """The scalar outlier metrics of one site's tensor x [N, T, d] (see the module docstring),
    and its outlier-token mask [N, T]."""
    tmax = token_max(x)
    kurt = kurtosis(x)
    mask = outlier_mask(tmax, eta)
    stats = {
        "max_abs": float(tmax.max()),
        "kurtosis_mean": float(kurt.nanmean()),
        "kurtosis_max": float(kurt.max()) if not bool(kurt.isnan().all()) else float("nan"),
        "token_max_over_median": float(max_over_median(tmax).mean()),
        "n_outlier_tokens": float(mask.sum(1).float().mean()),
    }
    return stats, mask


def frequent(mask: torch.Tensor, labels: torch.Tensor, top: int) -> list[tuple[int, int]]:
    """The `top` most common labels at the True entries of `mask`, as (label, count), most
    common first and ties broken by the smaller label, so the order is deterministic."""
    counts = Counter(labels[mask].tolist())
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]


# -- which tensor is each site ---------------------------------------------------------------


def site_tensors(
    probe: ProbeOutput, layer: int, model: nn.Module | None = None
) -> dict[str, torch.Tensor]:
    """The [N, T, d] tensor of each site of `layer` that the probe (and model) can give.

    `o_in`, `down_in` and `resid_post` are in the cache. The q/k/v and gate/up inputs are a
    norm's output, which the probe does not keep: they are recomputed here by the model's own
    norm modules from the captured norm inputs (pre-norm), or read as the block input
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
                    out["qkv_in"] = _apply(block.norm_attn, attn_in)
                mlp_in = cache.get(f"blocks.{layer}.norm_mlp.input")
                if mlp_in is not None and hasattr(block, "norm_mlp"):
                    out["gate_up_in"] = _apply(block.norm_mlp, mlp_in)
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


def _apply(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run a norm on a captured tensor where the norm lives, and bring the result back to the
    capture's device (the CPU copy, or the accelerator when the probe is measured there)."""
    device = next(norm.parameters(), torch.empty(0)).device
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
    """
    check_eta(eta)
    rows: list[tuple[int, int, str, float]] = []
    peaks: dict[str, float] = {}
    for layer in range(probe.n_layers):
        for site, x in site_tensors(probe, layer, model).items():
            prefix = f"outliers/{site}"
            stats, mask = site_stats(x, eta)
            rows.extend((layer, -1, f"{prefix}/{metric}", v) for metric, v in stats.items())
            peaks[site] = max(peaks.get(site, float("-inf")), stats["max_abs"])
            if not bool(mask.any()):
                continue
            N, T = mask.shape
            where = torch.arange(T, device=mask.device).expand(N, T)
            for i, (pos, count) in enumerate(frequent(mask, where, top)):
                rows.append((layer, -1, f"{prefix}/position/rank_{i}", float(pos)))
                rows.append((layer, -1, f"{prefix}/position_share/rank_{i}", count / N))
            if input_ids is not None and tuple(input_ids.shape) == (N, T):
                total = int(mask.sum())
                for i, (tok, count) in enumerate(frequent(mask, input_ids.to(mask.device), top)):
                    rows.append((layer, -1, f"{prefix}/token/rank_{i}", float(tok)))
                    rows.append((layer, -1, f"{prefix}/token_share/rank_{i}", count / total))
    rows.extend((-1, -1, f"outliers/{site}/max_abs", value) for site, value in peaks.items())
    return rows
