"""Reference frames (metrics.md section 3, Ruscio, Nanni & Silvestri 2025) and the
project's frame classification.

Everything works on a batch of attention maps `maps` [B, n, n] (row = query, column = key),
each already averaged over the probe windows; `measure` passes every head of a layer plus
the head-averaged map in one batch, so each call is a handful of small batched
eigen-decompositions.

Received attention. r_k = sum_t A[t,k] / n, the mean attention key k receives over all
queries (the Spike paper's alpha'). In a causal map late keys are seen by few queries and
so receive little; that is the intent: a reference token is one the whole sequence uses.
In an encoder's map (model.causal=false) every query sees every key, so r_k is Gu's alpha_k
there, and late keys can be references too: the bidirectional class (anchors at both ends)
is only reachable in practice by encoders (Ruscio et al.). Every measure below uses the
whole n x n map, causal or not; only the row-entropy normalisation asks which it is (a map
with nothing above the diagonal is taken as causal).

Classification rule (per map; thresholds are `MetricsConfig` fields):
  refs = keys with r_k > ref_threshold (0.1); r1 >= r2 the two largest r, at p1, p2.
  - none:          no key has r_k > 0.1 (attention is spread; a uniform causal map at
                   n = 64 has r_0 = H_64 / 64 = 0.074).
  - bidirectional: at least two refs, r2 >= bidir_balance (0.5) x r1, and one of p1, p2
                   lies in the first edge_frac (10 %) of positions and the other in the
                   last 10 %: two comparable anchors at start and end.
  - centralized:   otherwise, when there is one ref, or r1 >= central_dominance (2) x r2:
                   one dominant origin.
  - distributed:   otherwise: several references of comparable weight.
The model's class is the most common class among its layers that are not "none" (ties go
to centralized, then bidirectional, then distributed); "none" when every layer is.
The rule is calibrated for the project's T = 64: for short windows (n < ~24) the causal
bias toward early keys alone can push r_0 over 0.1.
"""

from __future__ import annotations

import math

import torch

FRAME_CLASSES = ("none", "centralized", "distributed", "bidirectional")
FRAME_CODE = {name: code for code, name in enumerate(FRAME_CLASSES)}
_TIE_ORDER = ("centralized", "bidirectional", "distributed")


def received_attention(maps: torch.Tensor) -> torch.Tensor:
    """r_k = sum_t A[t,k] / n.  [B, n, n] -> [B, n]."""
    return maps.sum(-2) / maps.shape[-2]


def reference_tokens(
    r: torch.Tensor, threshold: float = 0.1, fallback_frac: float = 0.1, cap_frac: float = 0.3
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ruscio et al.'s reference tokens, ranked by r.

    Returns (positions [B, n] sorted by r descending, count [B] of reference tokens,
    fallback [B] bool). The count is the number with r > threshold, capped at cap_frac x n;
    when none passes, the top fallback_frac x n keys are taken and `fallback` is True.
    """
    n = r.shape[-1]
    order = r.argsort(dim=-1, descending=True)
    strict = (r > threshold).sum(-1)
    cap = max(1, int(cap_frac * n))
    fallback = strict == 0
    count = torch.where(
        fallback,
        torch.full_like(strict, max(1, math.ceil(fallback_frac * n))),
        strict.clamp_max(cap),
    )
    return order, count, fallback


def gini(x: torch.Tensor) -> torch.Tensor:
    """Gini coefficient along the last axis (0 = equal, (n-1)/n = all in one); 0 for all-zero rows."""
    n = x.shape[-1]
    xs = x.float().sort(dim=-1).values
    total = xs.sum(-1)
    ranks = torch.arange(1, n + 1, dtype=xs.dtype, device=xs.device)
    g = 2.0 * (ranks * xs).sum(-1) / (n * total.clamp_min(1e-30)) - (n + 1) / n
    return torch.where(total > 0, g, torch.zeros_like(g))


def graph_measures(maps: torch.Tensor, tau: float) -> dict[str, torch.Tensor]:
    """The thresholded-graph view: edge t -> k when A[t,k] > tau and t != k.

    in-degree Gini; star-likeness = 0.3 max in-degree / (n-1) + 0.7 Gini; degree
    centralisation = sum_i (d_max - d_i) / (n-1)^2; Fiedler value = second-smallest
    eigenvalue of the Laplacian of the symmetrised weighted graph (W + W^T)/2, where W keeps
    the attention weights of the kept edges (0 for a disconnected graph).
    """
    n = maps.shape[-1]
    off_diag = ~torch.eye(n, dtype=torch.bool, device=maps.device)
    edges = (maps > tau) & off_diag
    indeg = edges.sum(-2).float()
    g = gini(indeg)
    dmax = indeg.amax(-1)
    weights = maps.float() * edges
    sym = 0.5 * (weights + weights.transpose(-2, -1))
    lap = torch.diag_embed(sym.sum(-1)) - sym
    evals = torch.linalg.eigvalsh(lap.double())
    return {
        "frames/indegree_gini": g,
        "frames/star_likeness": 0.3 * dmax / (n - 1) + 0.7 * g,
        "frames/degree_centralisation": (dmax[..., None] - indeg).sum(-1) / (n - 1) ** 2,
        "frames/fiedler": evals[..., 1].float().clamp_min(0),
    }


def spectral_measures(maps: torch.Tensor, top_column_frac: float = 0.1) -> dict[str, torch.Tensor]:
    """Spectra and concentration of each map.

    participation ratio (sum|lambda|)^2 / sum lambda^2 over the eigenvalues of the
    symmetrised map (A + A^T)/2 (a causal map's own eigenvalues are just its diagonal);
    stable rank sum sigma^2 / sigma_1^2 of A; the share of the total column mass held by the
    top ceil(top_column_frac x n) columns; mean row entropy (nats) over rows t >= 1, and the
    same divided by log(number of visible keys) (t + 1 for a causal map, n otherwise).
    """
    n = maps.shape[-1]
    a = maps.double()
    lam = torch.linalg.eigvalsh(0.5 * (a + a.transpose(-2, -1)))
    pr = lam.abs().sum(-1) ** 2 / (lam**2).sum(-1).clamp_min(1e-300)
    sv = torch.linalg.svdvals(a)
    stable = (sv**2).sum(-1) / (sv[..., 0] ** 2).clamp_min(1e-300)
    cols = a.sum(-2)
    k = max(1, math.ceil(top_column_frac * n))
    top_mass = cols.topk(k, dim=-1).values.sum(-1) / cols.sum(-1).clamp_min(1e-300)
    rows = a / a.sum(-1, keepdim=True).clamp_min(1e-300)
    ent = -(rows * rows.clamp_min(1e-300).log()).sum(-1)[..., 1:]
    upper = torch.triu(a, diagonal=1).abs().sum((-2, -1))
    causal = upper <= 1e-6 * a.abs().sum((-2, -1)).clamp_min(1e-300)
    visible_causal = torch.arange(2, n + 1, dtype=a.dtype, device=a.device).log()
    visible = torch.where(
        causal[..., None], visible_causal, torch.full_like(visible_causal, math.log(n))
    )
    return {
        "frames/participation_ratio": pr.float(),
        "frames/stable_rank": stable.float(),
        "frames/top_column_mass": top_mass.float(),
        "frames/row_entropy": ent.mean(-1).float(),
        "frames/row_entropy_norm": (ent / visible).mean(-1).float(),
    }


def classify_frames(
    r: torch.Tensor,
    *,
    ref_threshold: float = 0.1,
    central_dominance: float = 2.0,
    bidir_balance: float = 0.5,
    edge_frac: float = 0.1,
) -> torch.Tensor:
    """Frame class code (FRAME_CODE) per map from received attention r [B, n]; rule in the module doc."""
    n = r.shape[-1]
    top = r.topk(min(2, n), dim=-1)
    r1 = top.values[..., 0]
    r2 = top.values[..., 1] if n > 1 else torch.zeros_like(r1)
    p1 = top.indices[..., 0]
    p2 = top.indices[..., 1] if n > 1 else torch.zeros_like(p1)
    n_refs = (r > ref_threshold).sum(-1)
    edge = max(1, math.ceil(edge_frac * n))
    start1, start2 = p1 < edge, p2 < edge
    end1, end2 = p1 >= n - edge, p2 >= n - edge
    ends = (start1 & end2) | (end1 & start2)
    bidir = (n_refs >= 2) & (r2 >= bidir_balance * r1) & ends
    central = (n_refs == 1) | (r1 >= central_dominance * r2)
    code = torch.full_like(n_refs, FRAME_CODE["distributed"])
    code = torch.where(central, torch.full_like(code, FRAME_CODE["centralized"]), code)
    code = torch.where(bidir, torch.full_like(code, FRAME_CODE["bidirectional"]), code)
    code = torch.where(n_refs == 0, torch.full_like(code, FRAME_CODE["none"]), code)
    return code


def model_frame(layer_codes: list[int]) -> int:
    """The model's class: the most common non-"none" layer class (ties: centralized,
    bidirectional, distributed); "none" when every layer is none."""
    counts = {name: sum(1 for c in layer_codes if c == FRAME_CODE[name]) for name in _TIE_ORDER}
    best = max(_TIE_ORDER, key=lambda name: (counts[name], -_TIE_ORDER.index(name)))
    return FRAME_CODE[best] if counts[best] > 0 else FRAME_CODE["none"]
