"""The reference: the shortest honest PyTorch training loop for the same model and optimiser.

It trains `sinklab.model.Transformer` with the optimiser sinklab builds (AdamW over the same
decay groups), the same learning-rate schedule, gradient clipping and masked loss, on the same
batches (`SinkDataModule.batch_at`). Nothing else: no logging, no callbacks, no framework. The
gap between this and the Lightning path is the framework's cost per step.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from sinklab.bench.recipe import Recipe
from sinklab.bench.timing import Stamp, sync
from sinklab.model import ModelConfig, Transformer
from sinklab.training.optim import build_optimizer, lr_factor


def _autocast(recipe: Recipe) -> contextlib.AbstractContextManager:
    if recipe.precision.startswith("bf16-mixed"):
        return torch.autocast(recipe.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def plain_step_seconds(
    recipe: Recipe,
    steps: int,
    *,
    model_overrides: dict | None = None,
    compile: bool = False,
    seed: int = 0,
) -> list[Stamp]:
    """Train a fresh model for `steps` steps; each step's wall and CPU time (data fetch included).

    Each step's time runs from the end of the previous step to the end of this one, as the
    Lightning side measures it, so batch generation and loop overhead count on both sides.
    """
    torch.manual_seed(seed)
    cfg = ModelConfig.from_dict({**recipe.model, **(model_overrides or {})})
    device = recipe.device
    model = Transformer(cfg).to(device)
    if compile:
        model.compile()
    model.train()
    optim_cfg = recipe.optim
    optimizer = build_optimizer(model, optim_cfg)
    max_steps = recipe.run.trainer.max_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, max_steps, optim_cfg)
    )
    params = [p for p in model.parameters() if p.requires_grad]
    data = recipe.datamodule
    seconds: list[Stamp] = []
    sync(device)
    last = Stamp.now()
    for step in range(steps):
        batch = data.batch_at(step)
        ids = batch["input_ids"].to(device, non_blocking=True)
        targets = (
            batch["targets"].masked_fill(~batch["loss_mask"], -100).to(device, non_blocking=True)
        )
        with _autocast(recipe):
            logits = model(ids)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)
        loss.backward()
        if optim_cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(params, optim_cfg.grad_clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        now = Stamp.now()
        seconds.append(now - last)
        last = now
    return seconds
