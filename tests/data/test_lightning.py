"""End to end with a real Lightning Trainer: max_steps never changes the order; resume continues it."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch

from sinklab.training.datamodule import SinkDataModule


class Recorder(L.LightningModule):
    """A one-parameter model that remembers the first token of every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[list[int]] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen.append(batch["input_ids"][:, :4].flatten().tolist())
        return (self.w * batch["loss_mask"].float().mean()).sum() + self.w.pow(2).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit(
    make_cfg, root: Path, max_steps: int, ckpt: str | None = None, accumulate: int = 1
) -> Recorder:
    dm = SinkDataModule(make_cfg())
    model = Recorder()
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        accumulate_grad_batches=accumulate,
        default_root_dir=root,
        enable_checkpointing=False,
    )
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
    if ckpt is None:
        trainer.save_checkpoint(root / f"step{max_steps}.ckpt", weights_only=False)
    return model


def test_max_steps_and_resume(make_cfg, tmp_path: Path) -> None:
    short = _fit(make_cfg, tmp_path, 3)
    long = _fit(make_cfg, tmp_path, 6)
    assert long.seen[:3] == short.seen  # the run length does not change the order
    ckpt = torch.load(tmp_path / "step3.ckpt", weights_only=False)
    state = [v for k, v in ckpt.items() if "SinkDataModule" in k]
    assert state == [{"batches_seen": 3}]
    resumed = _fit(make_cfg, tmp_path / "r", 6, ckpt=str(tmp_path / "step3.ckpt"))
    assert resumed.seen == long.seen[3:]


def test_resume_with_gradient_accumulation(make_cfg, tmp_path: Path) -> None:
    full = _fit(make_cfg, tmp_path, 4, accumulate=2)
    _fit(make_cfg, tmp_path / "a", 2, accumulate=2)
    resumed = _fit(
        make_cfg, tmp_path / "b", 4, ckpt=str(tmp_path / "a" / "step2.ckpt"), accumulate=2
    )
    assert len(full.seen) == 8 and resumed.seen == full.seen[4:]
