"""Shared checks for the family converters: a converted model must equal transformers' own.

Logits within 1e-4 and attention probabilities within 1e-5 (fp32, eager attention), on a
small random model whose every parameter was perturbed, so a dropped bias or a norm gain read
from the wrong tensor shows.
"""

from __future__ import annotations

import torch


def randomize(hf_model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Perturb every parameter (biases and norm gains included) reproducibly; eval mode."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, p in sorted(hf_model.named_parameters()):
            p.add_(torch.randn(p.shape, generator=gen) * scale)
    return hf_model.eval()


def random_ids(vocab_size: int, length: int = 24, batch: int = 2, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, length), generator=gen)


def assert_same_logits(
    hf_model: torch.nn.Module, ours: torch.nn.Module, ids: torch.Tensor, atol: float = 1e-4
) -> None:
    """Our logits (training and probe paths) equal transformers' within `atol`."""
    with torch.no_grad():
        expected = hf_model(ids).logits.float()
        got = ours(ids)
        probed = ours.forward_probe(ids, names=[]).logits
    assert expected.std() > 0.1, "logits too flat for the comparison to mean anything"
    torch.testing.assert_close(got, expected, rtol=0, atol=atol)
    torch.testing.assert_close(probed, expected, rtol=0, atol=atol)


def assert_same_attention(
    hf_model: torch.nn.Module, ours: torch.nn.Module, ids: torch.Tensor, atol: float = 1e-5
) -> None:
    """Our probe's attention probabilities equal transformers' eager ones in every layer."""
    n_layers = ours.cfg.n_layers
    names = [f"blocks.{i}.attn.pattern" for i in range(n_layers)]
    with torch.no_grad():
        theirs = hf_model(ids, output_attentions=True).attentions
        probe = ours.forward_probe(ids, names=names)
    assert theirs is not None and len(theirs) == n_layers, "transformers returned no attentions"
    for i in range(n_layers):
        got = probe.cache[f"blocks.{i}.attn.pattern"]
        torch.testing.assert_close(got, theirs[i].float(), rtol=0, atol=atol, msg=f"layer {i}")
