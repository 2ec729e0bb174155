"""What the probe path returns: logits plus named intermediate tensors.

Names follow TransformerLens' habit of stable, documented hook names, so analysis code and
users address tensors the same way. Each name is also a hook point that an edit can
replace, scale or ablate during the forward (`forward_probe(ids, edits={name: fn})`, helpers
in `edits.py`): the edit gets the tensor in the shape below and returns that shape.

    embed                         [N, T, d]    input to block 0 (token positions only)
    blocks.{l}.norm_attn.input    [N, T, d]    input to the attention norm
    blocks.{l}.norm_mlp.input     [N, T, d]    input to the MLP norm
    blocks.{l}.attn.q             [N, H, T, hd]    queries after position encoding / qk-norm
    blocks.{l}.attn.k             [N, Hkv, T, hd]  keys after position encoding / qk-norm
    blocks.{l}.attn.v             [N, Hkv, T, hd]  values
    blocks.{l}.attn.pattern       [N, H, T, E + T] attention weights; the first E columns are
                                                   the extra slots named in `extra_slots`,
                                                   the rest are token positions 0..T-1
    blocks.{l}.attn.z             [N, H, T, hd]    per-head output before the output projection
                                                   (after the gate of gated attention); zeroing
                                                   head h here removes its contribution
    blocks.{l}.mlp.hidden         [N, T, d_ff]     MLP activation fed to the down projection
    blocks.{l}.resid_post         [N, T, d]        residual stream after block l
    norm_final.input              [N, T, d]

Sink-token prefix positions are dropped from every per-token tensor: position 0 is always the
first real token; an edit sees the same positions and leaves the prefix as it was (unless it
is wrapped in `recorder.WithPrefix`). An edit of `attn.pattern` acts on the weights before
they mix the values, so it forces the explicit attention path in its layer. The cache holds
what flowed on: an edited tensor after its edit. `pattern` rows sum to one over all E + T columns for normalised variants
(`normalised=True`); for sigmoid / relu / clipped_softmax attention they are the raw
non-negative weights. `causal` says whether the model masked the future (False for an
encoder, whose rows spread over all T token columns).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

NameFilter = Callable[[str], bool] | Iterable[str] | None


def name_filter(names: NameFilter) -> Callable[[str], bool]:
    """Turn a user's filter (None, a callable, or a list of names/prefixes) into a predicate."""
    if names is None:
        return lambda name: True
    if callable(names):
        return names
    wanted = tuple(names)
    return lambda name: any(
        name == w or name.startswith(w + ".") or name.endswith(w) for w in wanted
    )


@dataclass
class ProbeOutput:
    logits: torch.Tensor
    cache: dict[str, torch.Tensor] = field(default_factory=dict)
    n_layers: int = 0
    extra_slots: tuple[str, ...] = ()
    normalised: bool = True
    # False for an encoder: every query sees every key, so metrics that average over the
    # queries that can see a key (alpha_k, causal q/k pairs) use all T queries instead.
    causal: bool = True

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.cache[name]

    def __contains__(self, name: str) -> bool:
        return name in self.cache

    def layer(self, index: int, name: str) -> torch.Tensor:
        """`probe.layer(2, "attn.pattern")` is `probe["blocks.2.attn.pattern"]`."""
        return self.cache[f"blocks.{index}.{name}"]
