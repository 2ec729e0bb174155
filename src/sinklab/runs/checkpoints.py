"""Checkpoints of a run: their names, listing them, and reading and writing weights safely.

Names are `step0000512-tokens1048576.ckpt` (sortable by step, and they say how much data the
model has seen). Those hold the weights only (Lightning's weights-only dump: `state_dict`,
`hyper_parameters`, `sinklab`, loop counters); `last.ckpt` holds the full training state
(optimizer, scheduler, callbacks) and is the one a run resumes from. Every load uses
`torch.load(weights_only=True)`: a checkpoint from the internet can carry tensors and plain
values, never code. A file that needs arbitrary objects unpickled is refused.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from sinklab.atomic import commit, temp_name
from sinklab.model import ModelConfig, Transformer
from sinklab.runs.layout import RunLayout

CKPT_RE = re.compile(r"^step(\d+)-tokens(\d+)\.ckpt$")


def checkpoint_name(step: int, tokens_seen: int) -> str:
    """`step0000512-tokens1048576.ckpt`: sortable by step, and says how much data it has seen."""
    return f"step{step:07d}-tokens{tokens_seen}.ckpt"


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint file with the step and token count its name promises (-1: a name that
    promises nothing, such as last.ckpt; the file itself then says)."""

    path: Path
    step: int
    tokens_seen: int


def parse_checkpoint(path: Path) -> CheckpointFile:
    """The step and token count in a checkpoint's name, or -1 for both when it has none."""
    m = CKPT_RE.match(Path(path).name)
    if m is None:
        return CheckpointFile(Path(path), -1, -1)
    return CheckpointFile(Path(path), int(m.group(1)), int(m.group(2)))


def list_checkpoints(run_dir: Path) -> list[CheckpointFile]:
    """`step*-tokens*.ckpt` files of a run, by step; last.ckpt and temporary files are not listed."""
    folder = RunLayout(run_dir).checkpoint_dir
    if not folder.is_dir():
        return []
    found = [parse_checkpoint(p) for p in folder.iterdir() if p.is_file()]
    return sorted((c for c in found if c.step >= 0), key=lambda c: c.step)


def newest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete log-spaced checkpoint of a run, by step (weights only: for analysis)."""
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1].path if ckpts else None


def resume_checkpoint(run_dir: Path) -> Path | None:
    """The run's full-state checkpoint (`last.ckpt`), what a restarted run resumes from."""
    path = RunLayout(run_dir).last_checkpoint
    return path if path.is_file() else None


def is_full_state(state: dict[str, Any]) -> bool:
    """Whether a loaded checkpoint can resume training (it holds the optimizer state)."""
    return isinstance(state, dict) and "optimizer_states" in state


class UnsafeCheckpointError(RuntimeError):
    """The file would need arbitrary Python objects unpickled; we refuse to run its code."""


class UnreadableCheckpointError(RuntimeError):
    """The file is truncated, corrupted or not a checkpoint."""


@dataclass
class CheckpointInfo:
    path: Path
    step: int
    tokens_seen: int
    model_config: ModelConfig


def load_checkpoint_state(
    path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False
) -> dict[str, Any]:
    """`torch.load` with weights_only=True, turning failures into two clear error types.

    `mmap=True` maps the tensors instead of reading them: a cheap look at a big checkpoint.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            raise UnsafeCheckpointError(
                f"{path}: refusing to load, it needs arbitrary objects unpickled (weights_only=True failed). "
                "Only load checkpoints you trust, and re-save them with plain tensors."
            ) from None
        raise UnreadableCheckpointError(f"{path}: not a readable checkpoint ({err})") from None
    except (RuntimeError, EOFError, OSError, ValueError) as err:
        raise UnreadableCheckpointError(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {err})"
        ) from None


def load_checkpoint_model(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[Transformer, CheckpointInfo]:
    """Rebuild the trained `Transformer` from a sinklab Lightning checkpoint."""
    state = load_checkpoint_state(path, map_location)
    try:
        model_dict = state["hyper_parameters"]["model"]
        weights = {
            k.removeprefix("model."): v
            for k, v in state["state_dict"].items()
            if k.startswith("model.")
        }
    except (KeyError, TypeError):
        raise UnreadableCheckpointError(
            f"{path}: not a sinklab checkpoint (no model hyper-parameters)"
        ) from None
    cfg = ModelConfig.from_dict(model_dict)
    model = Transformer(cfg)
    model.load_state_dict(weights)
    model.eval()
    step = int(state.get("global_step", 0))
    tokens = int(state.get("sinklab", {}).get("tokens_seen", 0))
    return model, CheckpointInfo(Path(path), step, tokens, cfg)


def export_safetensors(
    model: torch.nn.Module, path: Path, metadata: dict[str, str] | None = None
) -> None:
    """Model weights alone, as safetensors (no pickle at all), written atomically."""
    from safetensors.torch import save_file

    seen: set[int] = set()
    state = {}
    for key, tensor in model.state_dict().items():
        if tensor.data_ptr() in seen:  # tied embeddings: store the shared tensor once
            continue
        seen.add(tensor.data_ptr())
        state[key] = tensor.detach().cpu().contiguous()
    tmp = temp_name(path)
    save_file(state, str(tmp), metadata=metadata or {})
    commit(tmp, path)


def load_safetensors_model(weights: Path, cfg: ModelConfig) -> Transformer:
    """The inverse of `export_safetensors` (tied weights are re-tied by the model itself)."""
    from safetensors.torch import load_file

    model = Transformer(cfg)
    missing, unexpected = model.load_state_dict(load_file(str(weights)), strict=False)
    tied = {"lm_head.weight"} if cfg.tie_embeddings else set()
    if unexpected or set(missing) - tied:
        raise UnreadableCheckpointError(
            f"{weights}: weights do not match the config (missing {missing}, unexpected {unexpected})"
        )
    return model.eval()
