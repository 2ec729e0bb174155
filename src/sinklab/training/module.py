"""The LightningModule: masked next-token loss, AdamW/SGD with a warm-up schedule, and the
guard against non-finite losses. The model itself lives in `sinklab.model`; this file only
trains it.

Step convention: every row a logger gets (train, validation, probes, checkpoints) is at the
number of optimizer steps completed. Lightning's own x-axis for train and validation rows is
one less (it counts before its step counter moves), so this module logs `step` itself, which
Lightning then uses as the row's step; and validation always runs after the last step, so the
final validation loss is the final model's.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from sinklab.model import ModelConfig, Transformer
from sinklab.training.config import OptimConfig
from sinklab.training.optim import build_optimizer, lr_factor

IGNORE = -100


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or Inf; the message names the step."""


def masked_lm_loss(
    logits: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor
) -> torch.Tensor:
    """Mean cross-entropy over the positions whose loss_mask is true (minimum-context masking)."""
    targets = targets.masked_fill(~loss_mask, IGNORE)
    return F.cross_entropy(
        logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1), ignore_index=IGNORE
    )


class SinkLabModule(L.LightningModule):
    """Trains one `Transformer`. Hyper-parameters are stored as plain dicts, so checkpoints load
    with `torch.load(weights_only=True)` and rebuild the same model without any pickled code."""

    def __init__(
        self,
        model: dict[str, Any],
        optim: dict[str, Any],
        max_steps: int,
        tokens_per_step: int,
        on_nonfinite: str = "stop",
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model_cfg = ModelConfig.from_dict(model)
        self.optim_cfg = OptimConfig(**{**optim, "betas": tuple(optim.get("betas", (0.9, 0.95)))})
        self.model = Transformer(self.model_cfg)
        self.max_steps = max_steps
        self.tokens_per_step = tokens_per_step
        self.corpus_tokens: int | None = None  # the training split's tokens (None: synthetic)
        self.on_nonfinite = on_nonfinite
        self.skipped_batches = 0
        self.last_good_step = 0  # optimizer steps completed when the last update was applied
        self.overhead_seconds = 0.0  # time spent in probes and checkpoints, kept out of tokens/s
        if compile:
            # nn.Module.compile() compiles in place: no wrapper, so no `_orig_mod.` in the state dict.
            self.model.compile()

    @property
    def tokens_seen(self) -> int:
        """Tokens consumed so far (all ranks, all micro-batches): a pure function of the step."""
        return int(self.global_step) * self.tokens_per_step

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        logits = self.model(batch["input_ids"])
        loss = masked_lm_loss(logits, batch["targets"], batch["loss_mask"])
        if not torch.isfinite(loss):
            if self.on_nonfinite == "skip":
                self.skipped_batches += 1
                self.log("train/skipped_batches", float(self.skipped_batches))
                # The row shows the NaN (and no gradient), not the previous batch's values.
                self.log("train/loss", loss, prog_bar=True)
                self.log("train/grad_norm", float("nan"))
                return None
            raise NonFiniteLossError(
                f"non-finite training loss ({loss.item()}) at step {self.global_step}; "
                "lower optim.lr, raise optim.warmup_steps, or set trainer.on_nonfinite=skip"
            )
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip gradients (one norm computation serves clipping, logging and the NaN guard)."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        if not params:
            return
        max_norm = self.optim_cfg.grad_clip or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        if torch.isfinite(norm):
            self.last_good_step = self.global_step + 1  # this update completes that many steps
            if self._row_at(self.global_step + 1):
                self.log("train/grad_norm", norm)  # flushed with this step's row
            return
        if self.on_nonfinite == "skip":
            self.skipped_batches += 1
            self.log("train/skipped_batches", float(self.skipped_batches))
            self.log("train/grad_norm", norm)  # the row shows the inf/NaN, not a stale norm
            optimizer.zero_grad(set_to_none=True)  # parameters without gradients are not updated
            return
        raise NonFiniteLossError(
            f"non-finite gradient norm at step {self.global_step}; "
            "lower optim.lr or set trainer.on_nonfinite=skip"
        )

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        # After the optimizer step: global_step is the number of steps completed.
        self.log("step", float(self.global_step))  # the x of this batch's row (Lightning's: -1)
        if self.global_step >= self.trainer.max_steps:
            # Lightning validates on its interval only; stopping here makes it validate now too.
            self.trainer.should_stop = True
        if self._row_at(self.global_step):
            self.log("train/tokens_seen", float(self.tokens_seen))
            if self.corpus_tokens:
                self.log("train/epochs_seen", self.tokens_seen / self.corpus_tokens)
            self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"])

    def _row_at(self, completed: int) -> bool:
        """Whether Lightning writes a train row once `completed` steps are done: every
        log_every_n_steps, and at the last step (where this module stops the loop)."""
        every = max(1, self.trainer.log_every_n_steps)
        return completed % every == 0 or completed >= self.trainer.max_steps

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        logits = self.model(batch["input_ids"])
        loss = masked_lm_loss(logits, batch["targets"], batch["loss_mask"])
        self.log("val/loss", loss, prog_bar=True, sync_dist=True)
        return loss

    def on_validation_epoch_end(self) -> None:
        self.log("step", float(self.global_step))  # validation ran after this many steps
        loss = self.trainer.callback_metrics.get("val/loss")
        if loss is not None:
            self.log("val/ppl", math.exp(min(float(loss), 50.0)), sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = build_optimizer(self.model, self.optim_cfg)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: lr_factor(step, self.max_steps, self.optim_cfg)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["sinklab"] = {
            "tokens_seen": self.tokens_seen,
            "skipped_batches": self.skipped_batches,
            "last_good_step": self.last_good_step,
            "model_config": self.model_cfg.to_dict(),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = checkpoint.get("sinklab", {})
        self.skipped_batches = int(saved.get("skipped_batches", 0))
        self.last_good_step = int(saved.get("last_good_step", checkpoint.get("global_step", 0)))
