"""The loss counts exactly the positions the loss mask keeps: masked positions add no loss and
no gradient, and a min_context run trains on a different loss from an unmasked run. Without
this, the minimum-context study could silently train on every position."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from sinklab.data import DataConfig
from sinklab.model import ModelConfig, build_model
from sinklab.training.datamodule import SinkDataModule
from sinklab.training.module import masked_lm_loss

V = 11


def test_loss_is_the_mean_over_kept_positions_only() -> None:
    torch.manual_seed(0)
    logits = torch.randn(2, 6, V)
    targets = torch.randint(0, V, (2, 6))
    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [0, 1, 0, 1, 0, 1]], dtype=torch.bool)
    expected = torch.stack(
        [F.cross_entropy(logits[n, t][None], targets[n, t][None]) for n, t in mask.nonzero()]
    ).mean()
    torch.testing.assert_close(masked_lm_loss(logits, targets, mask), expected)


def test_masked_positions_add_no_loss_and_no_gradient() -> None:
    torch.manual_seed(1)
    logits = torch.randn(2, 6, V, requires_grad=True)
    targets = torch.randint(0, V, (2, 6))
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[:, 3:] = True
    loss = masked_lm_loss(logits, targets, mask)
    loss.backward()
    assert logits.grad is not None
    assert torch.count_nonzero(logits.grad[~mask]) == 0
    assert torch.count_nonzero(logits.grad[mask]) > 0
    scrambled = logits.detach().clone()
    scrambled[~mask] = 1e4 * torch.randn_like(scrambled[~mask])  # anything at masked positions
    torch.testing.assert_close(masked_lm_loss(scrambled, targets, mask), loss.detach())


def batch_and_loss(min_context: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    data = {
        "source": "synthetic",
        "synthetic": {"kind": "zipf", "vocab_size": V},
        "seq_len": 16,
        "batch_size": 4,
        "min_context": min_context,
    }
    dm = SinkDataModule(DataConfig.from_dict(data))
    dm.setup()
    batch = dm.batch_at(0)
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(vocab_size=dm.vocab_size, d_model=16, n_layers=1, n_heads=2, max_seq_len=16)
    )
    with torch.no_grad():
        loss = masked_lm_loss(model(batch["input_ids"]), batch["targets"], batch["loss_mask"])
    return batch, loss


def test_min_context_masks_early_positions_and_changes_the_loss() -> None:
    plain_batch, plain_loss = batch_and_loss(0)
    masked_batch, masked_loss = batch_and_loss(8)
    assert torch.equal(plain_batch["input_ids"], masked_batch["input_ids"])  # same tokens
    assert bool(plain_batch["loss_mask"].all())
    assert not bool(masked_batch["loss_mask"][:, :8].any())
    assert bool(masked_batch["loss_mask"][:, 8:].all())
    assert not torch.isclose(plain_loss, masked_loss)
