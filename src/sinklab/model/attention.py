"""Self-attention with every variant the study compares, in a fused and an explicit path.

Causal by default; with `model.causal=false` (an encoder) no key is hidden, on both paths:
the fused path calls SDPA without `is_causal` and the explicit path's bias has no -inf. The
extra slots below are visible from every query either way.

Key axis layout, shared by both paths and by the probe pattern:

    [sink_logit slot] [kv_bias slot] [sink tokens 0..S-1] [tokens 0..T-1]

The two leading slots exist only when configured. A logit slot (`sink_logit`, and
`softmax_off_by_one` with its logit fixed at 0) is a zero key with a zero value whose score is
supplied by the additive bias, so the softmax gains one column that absorbs mass and
contributes nothing to the output. The kv_bias slot is a learned key/value pair per kv head,
without position encoding, visible from every query. Sink tokens are ordinary sequence
positions: being first, causal masking already keeps them visible.

Variants:
- softmax / gated / sink_logit / softmax_off_by_one: softmax over all columns; the fused path
  is `scaled_dot_product_attention`, mask-free (`is_causal` = model.causal) when there is no slot
  and no ALiBi, so flash kernels apply on a GPU.
- sigmoid: sigmoid(q.k * scale) per visible column, no normalisation and no bias inside the
  sigmoid: Gu et al.'s (2025) released sigmoid attention as it is (sail-sg/Attention-Sink,
  `lit_gpt/model_attn_sim.py`, `eager_scaled_dot_product_attention`: sigmoid of the scaled
  scores times the 0/1 causal mask). ALiBi, kv_bias or sink tokens enter only when configured.
- sigmoid_norm: sigmoid(score) divided by its row sum (theirs with `attention_normalize`; they
  add 1e-8 to the sum, we do not: a row always sees at least its own key).
- relu: ReLU(score) / n_t, with n_t the number of keys query t can see (its causal prefix,
  sink tokens and the kv_bias slot included; for an encoder, every key), so a decoder
  token's output never depends on later tokens or on the window length. This is what Guo
  et al.'s released code divides by (GuoTianYu2000/transformer-birth,
  `ihead_full_model.py`, `Attention.forward` with `attn_use_relu`: `scores /
  arange(1, T + 1)` broadcast over the query axis, i.e. row t by t + 1, its number of
  causal keys; their model has no extra slots). No normalisation.
- clipped_softmax: clip((zeta - gamma) * softmax(score) + gamma, 0, 1) with
  gamma = -clip_alpha / max_seq_len (Bondarenko et al. 2023, "Quantizable Transformers").
  T in gamma = -alpha / T is a constant of the model, as in their released OPT code
  (Qualcomm-AI-research/outlier-free-transformers, `opt_attention.py`: gamma = -alpha /
  max_seq_length, fixed when the layer is built, with max_seq_length = the training block
  size), so rows never depend on later tokens. Only alpha / T matters: to reproduce their
  gamma for windows of W tokens, set clip_alpha = alpha_theirs * max_seq_len / W. Rows may
  sum to less (or, with zeta > 1, more) than one, so the probe treats it as not normalised.
The last four have no fused kernel and always take the explicit path; its T x T weights live
only inside the op (and autograd's saved tensors).

A third path serves long-stream evaluation only: when `Positions.stream` holds a plan
(`streaming.py`), the un-rotated q/k/v go to the plan, which applies positions and a
bounded-cache mask itself. The training and probe paths never set it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from sinklab.model.config import ModelConfig
from sinklab.model.layers import RMSNorm
from sinklab.model.position import Positions
from sinklab.model.recorder import NULL_RECORDER, Recorder

SOFTMAX_FAMILY = ("softmax", "gated", "sink_logit", "softmax_off_by_one")


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d, H, Hkv, hd = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.n_heads, self.n_kv_heads, self.head_dim = H, Hkv, hd
        self.variant = cfg.attention
        self.causal = cfg.causal
        self.scale = cfg.attn_scale if cfg.attn_scale is not None else 1.0 / math.sqrt(hd)
        self.softcap = cfg.attn_softcap  # Gemma 2: scores -> cap * tanh(scores / cap)
        # clipped_softmax: stretch to [gamma, zeta], then clip to [0, 1]; T = max_seq_len
        self.clip_zeta = cfg.clip_zeta
        self.clip_gamma = -cfg.clip_alpha / cfg.max_seq_len
        self.dropout = cfg.dropout
        qkv_bias = cfg.bias or cfg.qkv_bias
        self.wq = nn.Linear(d, H * hd, bias=qkv_bias)
        self.wk = nn.Linear(d, Hkv * hd, bias=qkv_bias)
        self.wv = nn.Linear(d, Hkv * hd, bias=qkv_bias)
        self.wo = nn.Linear(H * hd, d, bias=cfg.bias)
        self.qk_norm_whole = cfg.qk_norm_scope == "projection"
        if cfg.qk_norm:  # over each head's dims, or (OLMo 2) over the whole projection
            q_dim, k_dim = (H * hd, Hkv * hd) if self.qk_norm_whole else (hd, hd)
            self.q_norm = RMSNorm(q_dim, cfg.norm_eps, cfg.norm_offset)
            self.k_norm = RMSNorm(k_dim, cfg.norm_eps, cfg.norm_offset)
        if cfg.attention == "gated":
            self.gate_per_head = cfg.gate == "per_head"
            self.gate = nn.Linear(d, H if self.gate_per_head else H * hd, bias=cfg.bias)
        if cfg.attention == "sink_logit":
            self.sink_logit = nn.Parameter(torch.zeros(H))
        self.logit_slot = cfg.attention in ("sink_logit", "softmax_off_by_one")
        if cfg.kv_bias:
            self.k_bias = nn.Parameter(torch.zeros(Hkv, hd))
            self.v_bias = nn.Parameter(torch.zeros(Hkv, hd))
        self.has_kv_bias = cfg.kv_bias
        self.n_slots = int(self.logit_slot) + int(cfg.kv_bias)

    def forward(
        self,
        x: torch.Tensor,
        pos: Positions,
        rec: Recorder = NULL_RECORDER,
    ) -> torch.Tensor:
        N, L, _ = x.shape
        H, hd = self.n_heads, self.head_dim
        q, k, v = self.project(x)
        if pos.stream is not None:
            z = pos.stream.attend(self, q, k, v, pos)
        else:
            q, k = pos.rotate(q), pos.rotate(k)  # RoPE only; the other kinds leave them
            q, k = q.transpose(1, 2), k.transpose(1, 2)
            q = rec.hook("q", q, pos_dim=2)
            k = rec.hook("k", k, pos_dim=2)
            v = rec.hook("v", v, pos_dim=2)

            k, v = self._prepend_slots(k, v)
            fusable = self.variant in SOFTMAX_FAMILY and self.softcap is None
            if fusable and not rec.touches("pattern"):
                z = self._fused(q, k, v, pos)
            else:
                z, _ = self._explicit(q, k, v, pos, rec)

        if self.variant == "gated":
            g = torch.sigmoid(self.gate(x)).view(N, L, H, 1 if self.gate_per_head else hd)
            z = z * g.transpose(1, 2)
        z = rec.hook("z", z, pos_dim=2)
        return self.wo(z.transpose(1, 2).reshape(N, L, H * hd))

    def project(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q [N, L, H, hd] and k [N, L, Hkv, hd] after qk-norm but before any position
        encoding, and v [N, Hkv, L, hd].

        Norm (and later rotate) in the projections' own [N, L, heads, hd] layout: the
        element-wise ops run on contiguous memory (on the transposed view they were strided).
        """
        N, L, _ = x.shape
        H, Hkv, hd = self.n_heads, self.n_kv_heads, self.head_dim
        q, k = self.wq(x), self.wk(x)
        if hasattr(self, "q_norm") and self.qk_norm_whole:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = q.view(N, L, H, hd), k.view(N, L, Hkv, hd)
        v = self.wv(x).view(N, L, Hkv, hd).transpose(1, 2)
        if hasattr(self, "q_norm") and not self.qk_norm_whole:
            q, k = self.q_norm(q), self.k_norm(k)
        return q, k, v

    # -- the extra slots -------------------------------------------------------------------

    def _prepend_slots(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        N = k.shape[0]
        ks, vs = [], []
        if self.logit_slot:
            zero = k.new_zeros(N, self.n_kv_heads, 1, self.head_dim)
            ks.append(zero)
            vs.append(zero)
        if self.has_kv_bias:
            ks.append(self.k_bias.to(k.dtype)[None, :, None].expand(N, -1, -1, -1))
            vs.append(self.v_bias.to(v.dtype)[None, :, None].expand(N, -1, -1, -1))
        if not ks:
            return k, v
        return torch.cat([*ks, k], dim=2), torch.cat([*vs, v], dim=2)

    def _bias(self, pos: Positions) -> torch.Tensor:
        """Additive bias over the whole key axis: [H or 1, L, n_slots + L]."""
        seq = pos.seq_bias()
        if not self.n_slots:
            return seq
        cols = []
        if self.logit_slot:
            logit = self.sink_logit if hasattr(self, "sink_logit") else seq.new_zeros(1)
            cols.append(logit.float()[:, None, None].expand(-1, pos.length, 1))
        if self.has_kv_bias:
            cols.append(seq.new_zeros(1, pos.length, 1))
        heads = max(seq.shape[0], *(c.shape[0] for c in cols))
        parts = [c.expand(heads, -1, -1) for c in cols] + [seq.expand(heads, -1, -1)]
        return torch.cat(parts, dim=2)

    # -- the two paths ----------------------------------------------------------------------

    def _fused(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, pos: Positions
    ) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        gqa = self.n_kv_heads != self.n_heads
        if not self.n_slots and pos.slopes is None and pos.window is None:
            return F.scaled_dot_product_attention(
                q, k, v, is_causal=pos.causal, dropout_p=p, scale=self.scale, enable_gqa=gqa
            )
        # 4-D [1, H or 1, L, keys]: with a 3-D mask, CPU SDPA falls back to the math kernel
        # (about 3x slower fwd+bwd on the tiny model); with 4-D it takes the fused flash kernel.
        mask = self._bias(pos).to(q.dtype)[None]
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=p, scale=self.scale, enable_gqa=gqa
        )

    def _explicit(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        pos: Positions,
        rec: Recorder = NULL_RECORDER,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores, weights and output by plain matmuls. Returns (z, weights [N, H, L, slots + L]);
        the weights pass the `pattern` hook (read, or edited before they mix the values)."""
        rep = self.n_heads // self.n_kv_heads
        if rep > 1:  # kv head j serves query heads j*rep .. (j+1)*rep - 1, as in HF's repeat_kv
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        scores = self.cap((q @ k.transpose(-2, -1)).float() * self.scale) + self._bias(pos)
        weights = rec.hook("pattern", self.weights(scores).to(q.dtype), pos_dim=2)
        used = F.dropout(weights, self.dropout) if self.training and self.dropout else weights
        return used @ v, weights

    def cap(self, scores: torch.Tensor) -> torch.Tensor:
        """Scaled scores soft-capped at `attn_softcap` (before any mask or bias); unchanged
        without a cap. A streaming plan calls it too."""
        if self.softcap is None:
            return scores
        return torch.tanh(scores / self.softcap) * self.softcap

    def weights(self, scores: torch.Tensor) -> torch.Tensor:
        """Attention weights from fp32 scores whose hidden columns hold -inf (the last axis is
        the key axis). Every variant is a function of its row alone, so the explicit path and
        a streaming plan (rows over a bounded cache) share it."""
        if self.variant in SOFTMAX_FAMILY:
            return torch.softmax(scores, dim=-1)
        if self.variant == "sigmoid":
            return torch.sigmoid(scores)
        if self.variant == "sigmoid_norm":
            weights = torch.sigmoid(scores)
            return weights / weights.sum(-1, keepdim=True)
        if self.variant == "relu":
            return torch.relu(scores) / visible_keys(scores)
        if self.variant == "clipped_softmax":
            stretched = (self.clip_zeta - self.clip_gamma) * torch.softmax(scores, dim=-1)
            return (stretched + self.clip_gamma).clamp(0.0, 1.0)
        raise ValueError(self.variant)  # pragma: no cover - ModelConfig rejects unknown variants


def visible_keys(scores: torch.Tensor) -> torch.Tensor:
    """Number of keys each row sees [..., 1]: its columns whose score is not -inf (the causal
    prefix, sink tokens and slots; under a streaming plan, the cache). At least 1."""
    return torch.isfinite(scores).sum(-1, keepdim=True).clamp_min(1).to(scores.dtype)
