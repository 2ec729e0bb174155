"""Attention-sink scores (metrics.md section 1), on one layer's attention at a time.

Inputs are one layer's weights `pattern` [N, H, T, E + T] (E extra slots first, then token
keys 0..T-1; row t = query). Every function is vectorised over windows and heads and
returns per-window values, so the caller chooses how to average; `layer_sink_scores`
does the averaging the project reports.

Causal models and encoders. A causal query t sees keys k <= t, so a key's importance is
averaged over the queries that can see it (t >= k, T - k of them). In an encoder
(`causal=False`) every query sees every key, so the same definition averages over all T
queries: alpha_k = sum_t A[t,k] / T. The first-token mass (queries t >= 1) is unchanged;
the q/k cosine over "pairs a query can see" takes all pairs t, j >= 1 in an encoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def proxy_scores(pattern: torch.Tensor) -> torch.Tensor:
    """Gu et al.'s proxy for attention that is not normalised: |s| / sum_j |s| per row.

    For non-negative scores (sigmoid, ReLU) |s| = s, so this is s / sum s; for signed
    scores (linear kernels) it is the absolute form. All-zero rows (a ReLU head that
    attends to nothing) stay zero rather than becoming NaN.
    """
    mag = pattern.abs().float()
    return mag / mag.sum(-1, keepdim=True).clamp_min(1e-30)


def split_slots(pattern: torch.Tensor, n_slots: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(extra-slot columns [..., T, E], token columns [..., T, T])."""
    T = pattern.shape[-2]
    if pattern.shape[-1] != n_slots + T:
        raise ValueError(
            f"attention pattern has {pattern.shape[-1]} key columns, expected {n_slots} slots + {T} tokens"
        )
    return pattern[..., :n_slots], pattern[..., n_slots:]


def causal_visibility(
    T: int, device: torch.device | None = None, causal: bool = True
) -> torch.Tensor:
    """[T, T] bool, True where query t can see key k (t >= k; every pair for an encoder)."""
    visible = torch.ones(T, T, dtype=torch.bool, device=device)
    return visible.tril() if causal else visible


def alpha_gu(tokens: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """Gu et al.'s per-key importance, the mean attention key k gets from the queries that
    see it: sum_{t>=k} A[t,k] / (T - k) for a causal map, sum_t A[t,k] / T for an encoder's.
    [..., T, T] -> [..., T]."""
    T = tokens.shape[-1]
    if not causal:
        return alpha_spike(tokens)
    visible = causal_visibility(T, tokens.device)
    summed = (tokens.float() * visible).sum(-2)
    return summed / torch.arange(T, 0, -1, device=tokens.device, dtype=summed.dtype)


def alpha_spike(tokens: torch.Tensor) -> torch.Tensor:
    """The Spike paper's column mass with divisor T: sum_t A[t,k] / T. [..., T, T] -> [..., T]."""
    return tokens.float().sum(-2) / tokens.shape[-2]


def sink_ratio_hit(tokens: torch.Tensor, eps: float, max_key: int | None = None) -> torch.Tensor:
    """1[max_{k <= max_key} alpha'[k] > eps] per window and head; max_key defaults to T // 2."""
    T = tokens.shape[-1]
    last = T // 2 if max_key is None else min(max_key, T - 1)
    return (alpha_spike(tokens)[..., : last + 1].amax(-1) > eps).float()


def first_token_mass(tokens: torch.Tensor) -> torch.Tensor:
    """mean_{t>=1} A[t, 0]: the plainest sink curve. [..., T, T] -> [...]."""
    return tokens[..., 1:, 0].float().mean(-1)


# Queries t >= query_start only (`MetricsConfig.query_start`). Each definition keeps its own
# query set and intersects it with t >= s, so s = 0 gives back the all-queries value:
#   alpha_0:            queries t >= s (every query sees key 0, causal or encoder)
#   sink ratio alpha':  queries t >= s, divisor T - s (the Spike paper's divisor is its query count T)
#   first-token mass:   queries t >= max(1, s)
# A run trained with no loss on t < data.min_context is measured where its loss is with
# s = min_context: the loss at input position t is the prediction made by query t.


def _check_query_start(tokens: torch.Tensor, query_start: int) -> None:
    T = tokens.shape[-2]
    if not 0 <= query_start < T:
        raise ValueError(f"query_start {query_start} is outside the window's queries 0..{T - 1}")


def alpha0_from(tokens: torch.Tensor, query_start: int) -> torch.Tensor:
    """alpha_0 over the queries t >= query_start: mean_{t>=s} A[t, 0]. [..., T, T] -> [...]."""
    _check_query_start(tokens, query_start)
    return tokens[..., query_start:, 0].float().mean(-1)


def sink_ratio_hit_from(
    tokens: torch.Tensor, eps: float, query_start: int, max_key: int | None = None
) -> torch.Tensor:
    """`sink_ratio_hit` over the queries t >= query_start: 1[max_{k <= max_key}
    sum_{t>=s} A[t,k] / (T - s) > eps]; the keys (k <= T // 2 by default) are unchanged."""
    _check_query_start(tokens, query_start)
    # alpha_spike divides by the number of rows it is given: T - s here
    return sink_ratio_hit(tokens[..., query_start:, :], eps, max_key)


def first_token_mass_from(tokens: torch.Tensor, query_start: int) -> torch.Tensor:
    """mean_{t >= max(1, s)} A[t, 0]: the first-token mass on the queries t >= query_start."""
    _check_query_start(tokens, query_start)
    return tokens[..., max(1, query_start) :, 0].float().mean(-1)


def slot_alpha(slots: torch.Tensor) -> torch.Tensor:
    """Per-slot importance: an always-visible slot is seen by all T queries, so alpha = mean_t A[t, e]."""
    return slots.float().mean(-2)


def qk_geometry(q: torch.Tensor, k: torch.Tensor, causal: bool = True) -> dict[str, torch.Tensor]:
    """Gu et al.'s q.k = |q||k|cos decomposition, per window and query head ([N, H] each).

    q [N, H, T, hd], k [N, Hkv, T, hd]; kv head j serves query heads j*rep..(j+1)*rep-1.
    Both cosine means use the queries t >= 1, so key 0 and the later keys are compared on
    the same queries: cos_q_k0 = mean_{t>=1} cos(q_t, k_0), cos_q_kj = mean over the
    causal pairs 1 <= j <= t of cos(q_t, k_j) (for an encoder, all pairs t >= 1, j >= 1).
    """
    N, H, T, _ = q.shape
    rep = H // k.shape[1]
    k = k.float().repeat_interleave(rep, dim=1) if rep > 1 else k.float()
    knorm = k.norm(dim=-1)
    cos = F.normalize(q.float(), dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
    later = causal_visibility(T, None, causal)  # built on the host: counting it reads nothing back
    later[:, 0] = False  # keys j >= 1 only
    later[0] = False  # queries t >= 1 only (for a causal map, t >= j >= 1 already)
    n_pairs = max(int(later.sum()), 1)
    later = later.to(q.device)
    return {
        "qk/k0_norm": knorm[..., 0],
        "qk/kt_norm_mean": knorm[..., 1:].mean(-1),
        "qk/cos_q_k0": cos[..., 1:, 0].mean(-1),
        "qk/cos_q_kj": (cos * later).sum((-2, -1)) / n_pairs,
    }
