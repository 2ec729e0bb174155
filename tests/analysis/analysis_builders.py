"""Hand-built attention maps, probes and a stand-in model whose metric values are known."""

from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import nn

from sinklab.model.probe import ProbeOutput


def uniform_causal(T: int) -> torch.Tensor:
    """Row t spreads 1 evenly over keys 0..t."""
    vis = torch.ones(T, T).tril()
    return vis / vis.sum(-1, keepdim=True)


def sink_map(T: int, key: int, mass: float) -> torch.Tensor:
    """Rows t >= key put `mass` on `key` and spread the rest evenly over the other visible
    keys (row 0 of a key-0 sink sees only key 0 and puts 1 there); rows t < key are uniform."""
    a = uniform_causal(T).clone()
    for t in range(key, T):
        others = t  # visible keys 0..t minus `key`
        row = torch.zeros(T)
        row[: t + 1] = (1 - mass) / others if others else 0.0
        row[key] = mass if others else 1.0
        a[t] = row
    return a


def probe_from_maps(
    maps: list[torch.Tensor],
    *,
    extra_slots: tuple[str, ...] = (),
    normalised: bool = True,
    cache: dict[str, torch.Tensor] | None = None,
) -> ProbeOutput:
    """One pattern per layer, each [N, H, T, E + T] (or [T, E + T], broadcast to N=2, H=3)."""
    full = {}
    for layer, m in enumerate(maps):
        if m.dim() == 2:
            m = m.expand(2, 3, *m.shape).clone()
        full[f"blocks.{layer}.attn.pattern"] = m
    full.update(cache or {})
    n = next(iter(full.values())).shape[0]
    return ProbeOutput(
        logits=torch.zeros(n, 1, 1),
        cache=full,
        n_layers=len(maps),
        extra_slots=extra_slots,
        normalised=normalised,
    )


class _MLP(nn.Module):
    def __init__(self, d: int, d_ff: int) -> None:
        super().__init__()
        self.w_gate = nn.Linear(d, d_ff, bias=False)
        self.w_up = nn.Linear(d, d_ff, bias=False)
        self.w_down = nn.Linear(d_ff, d, bias=False)


class _Block(nn.Module):
    def __init__(self, d: int, d_ff: int) -> None:
        super().__init__()
        self.mlp = _MLP(d, d_ff)


class OracleModel(nn.Module):
    """A stand-in for `sinklab.model.Transformer` whose loss is known in closed form.

    Logits are zero (loss log V) except where head 0 of layer 0 "helps": at the query
    positions in `helps` [N, T] it adds `boost` to the true next token's logit. An edit of
    `blocks.0.attn.z` (`forward_probe(ids, edits=...)`) acts on head outputs of ones
    [N, H, T, 1], and head 0's result multiplies that help, exactly as the real model's head
    output feeds the output projection. Other heads and layers contribute nothing, so zeroing
    them changes nothing.
    """

    def __init__(
        self,
        helps: torch.Tensor,
        vocab: int = 5,
        n_layers: int = 1,
        n_heads: int = 2,
        boost: float = 10.0,
        d: int = 8,
        d_ff: int = 12,
    ) -> None:
        super().__init__()
        self.register_buffer("helps", helps.float())
        self.vocab, self.boost, self.n_heads = vocab, boost, n_heads
        self.cfg = SimpleNamespace(mlp="swiglu", n_layers=n_layers)
        self.blocks = nn.ModuleList(_Block(d, d_ff) for _ in range(n_layers))

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.forward_probe(input_ids).logits

    def forward_probe(self, input_ids: torch.Tensor, *, names=None, edits=None) -> ProbeOutput:
        N, T = input_ids.shape
        rows = self._rows(input_ids)
        help_ = self.helps[rows]
        edit = (edits or {}).get("blocks.0.attn.z")
        if edit is not None:
            help_ = help_ * edit(torch.ones(N, self.n_heads, T, 1))[:, 0, :, 0]
        logits = torch.zeros(N, T, self.vocab)
        target = torch.cat([input_ids[:, 1:], input_ids[:, :1]], dim=1)
        logits.scatter_(2, target[..., None], (self.boost * help_)[..., None])
        return ProbeOutput(logits=logits, n_layers=len(self.blocks))

    def _rows(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Windows are identified by their first token (tests give each a distinct one)."""
        return input_ids[:, 0].long()


def qk_geometry_by_loops(q: torch.Tensor, k: torch.Tensor, causal: bool) -> dict[str, torch.Tensor]:
    """`sinks.qk_geometry` computed independently, one window, head and pair at a time:
    per-window values [N, H] of k0 / kt / c0 / cj; kv head j serves query heads
    j * rep .. (j + 1) * rep - 1."""
    n_win, n_heads, t_len, _ = q.shape
    rep = n_heads // k.shape[1]
    out = {m: torch.zeros(n_win, n_heads) for m in ("k0", "kt", "c0", "cj")}
    for n in range(n_win):
        for h in range(n_heads):
            qs, ks = q[n, h], k[n, h // rep]
            norms = [float(ks[t].norm()) for t in range(t_len)]
            out["k0"][n, h] = norms[0]
            out["kt"][n, h] = sum(norms[1:]) / (t_len - 1)
            cos = [[float(torch.nn.functional.cosine_similarity(qs[t], ks[j], dim=0)) for j in range(t_len)]
                   for t in range(t_len)]  # fmt: skip
            out["c0"][n, h] = sum(cos[t][0] for t in range(1, t_len)) / (t_len - 1)
            pairs = [
                (t, j) for t in range(1, t_len) for j in range(1, t_len) if j <= t or not causal
            ]
            out["cj"][n, h] = sum(cos[t][j] for t, j in pairs) / max(len(pairs), 1)
    return out


# The streaming tests' stream: a tiny seeded model and a seeded id stream of T tokens through a
# cache of C (tests/analysis/test_streaming*.py).
STREAM_T, STREAM_C = 24, 8


def stream_model(**kw) -> nn.Module:
    """The tiny model the streaming tests run, seeded, in eval mode."""
    from sinklab.model import build_model
    from tests.model.helpers import tiny

    torch.manual_seed(0)
    return build_model(tiny(**{"max_seq_len": 32, **kw})).eval()


def stream_ids(vocab: int = 32, n: int = STREAM_T) -> torch.Tensor:
    """A seeded stream of `n` token ids below `vocab`."""
    torch.manual_seed(1)
    return torch.randint(0, vocab, (n,))
