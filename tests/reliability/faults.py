"""Test-only fault injection: NaNs at a chosen step, a SIGKILL in the middle of a checkpoint
or metrics write, slow steps (so a test can kill a run mid-way).

Nothing here ships in `sinklab`: a test either calls these with pytest's `monkeypatch.setattr`
(in-process), or runs the real CLI through `DRIVER`, which installs the faults named in
SINKLAB_TEST_FAULTS (e.g. "slow=0.1,kill_checkpoint=step0000004") and then calls `sinklab.train.main()`.
"""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import torch

Patch = Callable[[Any, str, Any], None]

DRIVER = (
    "import os, sys; from tests.reliability import faults; "
    "faults.install(os.environ.get('SINKLAB_TEST_FAULTS', '')); "
    "from sinklab.train import main; main()"
)


def _sigkill_self() -> None:
    """What `kill -9` does: no cleanup, no flush, no finally blocks."""
    os.kill(os.getpid(), signal.SIGKILL)


def nan_loss_at(step: int, patch: Patch = setattr) -> None:
    """The training loss of the batch at global step `step` becomes NaN."""
    from sinklab.training import module

    original_step, original_loss = module.SinkLabModule.training_step, module.masked_lm_loss
    current = {"step": -1}

    def training_step(self, batch, batch_idx):  # noqa: ANN001, ANN202
        current["step"] = int(self.global_step)
        try:
            return original_step(self, batch, batch_idx)
        finally:
            current["step"] = -1

    def masked_lm_loss(*args):  # noqa: ANN002, ANN202
        loss = original_loss(*args)
        return loss * float("nan") if current["step"] == step else loss

    patch(module.SinkLabModule, "training_step", training_step)
    patch(module, "masked_lm_loss", masked_lm_loss)


def nan_grad_at(step: int, patch: Patch = setattr) -> None:
    """Every gradient of the batch at global step `step` becomes NaN (the loss stays finite)."""
    from sinklab.training import module

    original = module.SinkLabModule.on_before_optimizer_step

    def on_before_optimizer_step(self, optimizer):  # noqa: ANN001, ANN202
        if int(self.global_step) == step:
            for p in self.model.parameters():
                if p.grad is not None:
                    p.grad.fill_(float("nan"))
        return original(self, optimizer)

    patch(module.SinkLabModule, "on_before_optimizer_step", on_before_optimizer_step)


def slow_steps(seconds: float, patch: Patch = setattr) -> None:
    """Sleep after every training batch (numerics untouched), so a test can kill mid-run."""
    from sinklab.training import module

    original = module.SinkLabModule.on_train_batch_end

    def on_train_batch_end(self, *args):  # noqa: ANN001, ANN002, ANN202
        original(self, *args)
        time.sleep(seconds)

    patch(module.SinkLabModule, "on_train_batch_end", on_train_batch_end)


def kill_in_checkpoint_write(name: str, patch: Patch = setattr) -> None:
    """The first checkpoint save whose file name contains `name` (`step0000004`, `last`) writes
    half its bytes to disk, then the process is SIGKILLed (from the writer thread for last.ckpt:
    the whole process dies all the same)."""
    from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

    original = TorchCheckpointIO.save_checkpoint

    def save_checkpoint(self, checkpoint, path, storage_options=None):  # noqa: ANN001, ANN202
        if name not in os.path.basename(path):
            return original(self, checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        data = buffer.getvalue()
        with open(path, "wb") as fh:
            fh.write(data[: len(data) // 2])
            fh.flush()
            os.fsync(fh.fileno())
        _sigkill_self()

    patch(TorchCheckpointIO, "save_checkpoint", save_checkpoint)


def kill_in_parquet_write(nth: int, patch: Patch = setattr) -> None:
    """The `nth` parquet write (the probe table) writes half its bytes, then SIGKILL."""
    import pandas as pd

    original = pd.DataFrame.to_parquet
    calls = {"n": 0}

    def to_parquet(self, path=None, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        calls["n"] += 1
        if calls["n"] < nth:
            return original(self, path, *args, **kwargs)
        buffer = io.BytesIO()
        original(self, buffer, *args, **kwargs)
        data = buffer.getvalue()
        path.write(data[: len(data) // 2])
        path.flush()
        os.fsync(path.fileno())
        _sigkill_self()

    patch(pd.DataFrame, "to_parquet", to_parquet)


FAULTS: dict[str, Callable[..., None]] = {
    "nan_loss": lambda v: nan_loss_at(int(v)),
    "nan_grad": lambda v: nan_grad_at(int(v)),
    "slow": lambda v: slow_steps(float(v)),
    "kill_checkpoint": lambda v: kill_in_checkpoint_write(v),
    "kill_parquet": lambda v: kill_in_parquet_write(int(v)),
}


def install(spec: str) -> None:
    """Install the faults in `spec` ("name=value,name=value"); an empty spec installs none."""
    for item in filter(None, (s.strip() for s in spec.split(","))):
        name, _, value = item.partition("=")
        FAULTS[name](value)
