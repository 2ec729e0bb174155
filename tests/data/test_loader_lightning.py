"""The compact loader under a real Lightning Trainer with 2 workers, wired as the datamodule
wires it (`CompactLoader(stream, num_workers, pin_memory)`): the model trains on exactly
`batch_at(0), batch_at(1), ...`, tensors of their own dtypes, and a resume continues them."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from sinklab.data.loader import CompactLoader
from sinklab.training.datamodule import SinkDataModule
from tests.data.test_lightning import Recorder


class CompactDataModule(SinkDataModule):
    """The datamodule with its training loader built by CompactLoader."""

    def train_dataloader(self) -> DataLoader:
        built = super().train_dataloader()
        stream = getattr(built, "stream", built.dataset)
        return CompactLoader(stream, num_workers=self.cfg.num_workers, pin_memory=False)


class DtypeRecorder(Recorder):
    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        assert batch["input_ids"].dtype == torch.int64 and batch["loss_mask"].dtype == torch.bool
        return super().training_step(batch, batch_idx)


def _fit(make_cfg, root: Path, max_steps: int, ckpt: str | None = None) -> DtypeRecorder:
    dm = CompactDataModule(make_cfg(num_workers=2))
    model = DtypeRecorder()
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        default_root_dir=root,
        enable_checkpointing=False,
    )
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt)
    if ckpt is None:
        trainer.save_checkpoint(root / f"step{max_steps}.ckpt", weights_only=False)
    return model


def test_two_workers_train_on_the_indexed_batches_and_resume_continues_them(
    make_cfg, tmp_path: Path
) -> None:
    long = _fit(make_cfg, tmp_path, 6)
    reference = SinkDataModule(make_cfg())
    reference.setup("fit")
    expected = [reference.batch_at(i)["input_ids"][:, :4].flatten().tolist() for i in range(6)]
    assert long.seen == expected
    _fit(make_cfg, tmp_path / "a", 3)
    resumed = _fit(make_cfg, tmp_path / "r", 6, ckpt=str(tmp_path / "a" / "step3.ckpt"))
    assert resumed.seen == expected[3:]
