"""Massive activations (metrics.md section 2): magnitudes in the residual stream, norm
ratios of the first token, and the SwiGLU spike-channel anatomy from the weights.

Every function returns tensors (0-d for a scalar) on its input's device, never Python
floats: a probe measured on the GPU then reads nothing back until `measure` copies all its
rows to the host at once. `float(...)` a value to print it.
"""

from __future__ import annotations

import numpy as np
import torch

from sinklab.analysis import names

# Beyond this many multiply-adds the all-channel |U_k|_F (for the median) is skipped:
# cheap for the project's models, minutes for a 7B one.
_ALL_CHANNEL_BUDGET = 5e9


def row_median(x: torch.Tensor) -> torch.Tensor:
    """torch.median(x, dim=1).values (the lower median of each row of a 2-D tensor), the same
    values bit for bit, via numpy's partial sort where that is exact: about 4x faster on the
    [windows, T x d] magnitudes of the probe, where torch's median was a tenth of a probe pass.
    Rows with NaN (a diverged model) and tensors off the CPU keep torch.median, whose NaN
    handling numpy's partition does not share."""
    if x.device.type != "cpu" or x.dim() != 2 or x.shape[1] == 0 or not bool(x.isfinite().all()):
        return x.median(dim=1).values
    k = (x.shape[1] - 1) // 2
    return torch.from_numpy(np.partition(x.numpy(), k, axis=1)[:, k].copy())


def residual_extremes(
    h: torch.Tensor, top: int = 3, massive_abs: float = 100.0, massive_rel: float = 1000.0
) -> dict[str, torch.Tensor]:
    """Top |h| values, median, their ratio, where the top values sit, and Sun et al.'s count.

    h [N, T, d], one layer's residual stream. Statistics are taken per window (as Sun et al.
    do per sequence) and then averaged over windows: `top{i}` and `median` are means of the
    per-window values (median = the lower median), `top1_over_median` the mean of the
    per-window ratios. `top{i}_position` / `top{i}_channel` are the most common location of
    a window's i-th largest value, and `top{i}_location_share` the fraction of windows
    whose i-th value sits there (1.0 = the same (position, channel) in every window).
    `sun_count` is the mean number of values per window with |a| > massive_abs and
    |a| >= massive_rel x that window's median.
    """
    N, T, d = h.shape
    mag = h.detach().float().abs().reshape(N, T * d)
    k = min(top, T * d)
    values, flat = mag.topk(k, dim=1)
    median = row_median(mag)
    safe_median = median.clamp_min(1e-30)
    out: dict[str, torch.Tensor] = {
        names.MEDIAN: median.mean(),
        names.TOP1_OVER_MEDIAN: (values[:, 0] / safe_median).mean(),
    }
    for i in range(k):
        where = flat[:, i]
        mode = torch.mode(where).values
        out[f"massive/top{i + 1}"] = values[:, i].mean()
        out[f"massive/top{i + 1}_position"] = (mode // d).double()
        out[f"massive/top{i + 1}_channel"] = (mode % d).double()
        out[f"massive/top{i + 1}_location_share"] = (where == mode).float().mean()
    rule = (mag > massive_abs) & (mag >= massive_rel * median[:, None])
    out[names.SUN_COUNT] = rule.sum(dim=1).float().mean()
    return out


def first_token_norm_ratio(x: torch.Tensor) -> torch.Tensor:
    """|x_0| / mean_{t>=1} |x_t| with windows pooled: mean_n |x_n0| / mean_{n,t>=1} |x_nt|.

    x [N, ..., T, dim] (residuals [N, T, d] -> scalar; keys or values [N, Hkv, T, hd] -> [Hkv]).
    Pooling the denominator keeps the ratio stable when a window's later tokens are small.
    """
    norms = x.detach().float().norm(dim=-1)
    first = norms[..., 0].mean(0)
    rest = norms[..., 1:].mean(-1).mean(0)
    return first / rest.clamp_min(1e-30)


def top_channels(h: torch.Tensor, n: int) -> torch.Tensor:
    """The n channels with the largest |h| anywhere in the probe batch (h [N, T, d])."""
    peak = h.detach().float().abs().amax(dim=(0, 1))
    return peak.topk(min(n, peak.numel())).indices


def spike_matrix(
    w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor, channel: int | torch.Tensor
) -> torch.Tensor:
    """U_k = sum_i W_down[k,i] W_gate[i,:]^T W_up[i,:]  ([d, d]), with SiLU taken as the identity.

    w_gate, w_up [d_ff, d]; w_down [d, d_ff]. Output channel k of the MLP is then about h^T U_k h.
    """
    if isinstance(channel, torch.Tensor):  # a channel still on the device: no host read
        wk = w_down.index_select(0, channel.reshape(1).to(w_down.device))[0].float()
    else:
        wk = w_down[channel].float()
    return (w_gate.float() * wk[:, None]).T @ w_up.float()


def spike_fro_all(
    w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor
) -> torch.Tensor | None:
    """|U_k|_F for every output channel k, without forming any U_k.

    |U_k|_F^2 = w_k^T ((G G^T) o (V V^T)) w_k, with G = W_gate, V = W_up, w_k = W_down[k] and
    o the elementwise product. None when that would cost more than the budget above.
    """
    d_ff, d = w_gate.shape
    if float(d_ff) * d_ff * d > _ALL_CHANNEL_BUDGET:
        return None
    g, u, w = w_gate.float(), w_up.float(), w_down.float()
    m = (g @ g.T) * (u @ u.T)
    return ((w @ m) * w).sum(-1).clamp_min(0).sqrt()


def spike_anatomy(
    w_gate: torch.Tensor, w_up: torch.Tensor, w_down: torch.Tensor, channels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """For each channel (ranked as given): |U_k|_F, the largest-magnitude eigenvalue of
    S_k = (U_k + U_k^T)/2 (signed), and that eigenvalue's share of sum |lambda|. Also the
    median |U_k|_F over all channels and `spike/eigvec_align`, the mean |cos| between the
    first channel's top eigenvector and the others' (1 = they share one direction).
    """
    out: dict[str, torch.Tensor] = {}
    vectors = []
    for rank in range(channels.numel()):
        ch = channels.reshape(-1)[rank : rank + 1]  # [1], where it was found
        u = spike_matrix(w_gate, w_up, w_down, ch)
        s = 0.5 * (u + u.T)
        evals, evecs = torch.linalg.eigh(s.double())
        top = evals.abs().argmax().reshape(1)
        top_eig = evals.index_select(0, top)[0]
        out[f"spike/channel/rank_{rank}"] = ch[0].double()
        out[f"spike/u_fro/rank_{rank}"] = u.norm()
        out[f"spike/top_eig/rank_{rank}"] = top_eig
        out[f"spike/eig_share/rank_{rank}"] = top_eig.abs() / evals.abs().sum().clamp_min(1e-30)
        vectors.append(evecs.index_select(1, top)[:, 0])
    if len(vectors) > 1:
        first = vectors[0]
        out["spike/eigvec_align"] = torch.stack([(first @ v).abs() for v in vectors[1:]]).mean()
    all_fro = spike_fro_all(w_gate, w_up, w_down)
    if all_fro is not None:
        out["spike/u_fro_median"] = all_fro.median()
    return out
