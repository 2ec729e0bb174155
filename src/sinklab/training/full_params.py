"""A plain, unsharded copy of a (possibly sharded) model, for the probes and the final
safetensors export, without Lightning.

Under FSDP each rank holds a shard of every parameter, and un-sharding them is a collective:
a forward or a gather on rank 0 alone waits for the other ranks forever. So every rank calls
`full_model`, which gathers the weights the way the sharding needs them, and rank 0 gets a
plain `Transformer` it can probe on its own (no further collectives), while the other ranks
go on. An unsharded model (one process, DDP) is returned as it is, at no cost.
`rank0_model` is that choice for a Lightning run (probe callback, `run._finish`).

- FSDP2 (`torch.distributed.fsdp.fully_shard`): parameters are DTensors; `full_tensor()` on
  every rank, in state-dict order (the same on all ranks), all-gathers each one.
- FSDP1 (`FullyShardedDataParallel`, what Lightning's `strategy: fsdp` wraps around the whole
  LightningModule): the wrapper sits above the model, so the caller passes it as `root`; its
  FULL_STATE_DICT with `rank0_only` materialises the weights on rank 0 only, offloaded to the
  host on a GPU (the gathered tensors do not pile up in GPU memory while FSDP walks the tree).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from sinklab.model import Transformer

if dist.is_available():  # builds without torch.distributed cannot shard, so nothing to gather
    from torch.distributed.fsdp import FullStateDictConfig, StateDictType
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP1
    from torch.distributed.tensor import DTensor
else:  # pragma: no cover
    FSDP1 = DTensor = None  # type: ignore[assignment,misc]

Sharding = Literal["none", "fsdp1", "fsdp2"]

_FSDP1_PREFIX = "_fsdp_wrapped_module."  # FSDP1 inserts it into module names, not into keys


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _is_dtensor(t: torch.Tensor) -> bool:
    return DTensor is not None and isinstance(t, DTensor)


def _is_fsdp1(module: nn.Module) -> bool:
    return FSDP1 is not None and isinstance(module, FSDP1)


def sharding(root: nn.Module) -> Sharding:
    """How `root`'s parameters are sharded: FSDP1 wrappers anywhere in the tree, DTensor
    parameters (FSDP2), or not at all (one process, DDP: every rank has every weight)."""
    if any(_is_fsdp1(m) for m in root.modules()):
        return "fsdp1"
    if any(_is_dtensor(p) for p in root.parameters()):
        return "fsdp2"
    return "none"


def full_model(
    model: Transformer,
    root: nn.Module | None = None,
    *,
    device: torch.device | str | None = None,
) -> Transformer | None:
    """Call on EVERY rank. Rank 0 gets an unsharded `Transformer` with `model`'s weights in
    eval mode (on `device`, default the weights' device); the other ranks get None.

    `root` is the outermost module the strategy wrapped (Lightning's `trainer.strategy.model`),
    needed for FSDP1, whose wrapper sits above `model`; default `model` itself. An unsharded
    model is returned itself on rank 0 (no copy, no collective).
    """
    root = model if root is None else root
    kind = sharding(root)
    if kind == "none":
        return model if _rank() == 0 else None
    state = _fsdp1_state(model, root) if kind == "fsdp1" else _dtensor_state(model)
    if state is None:
        return None
    if device is None:
        device = next(iter(state.values())).device
    return _plain_copy(model, state, device)


def rank0_model(trainer: Any, module: Any) -> nn.Module | None:
    """Call on EVERY rank of a Lightning run: the model rank 0 measures or exports, None on
    the other ranks. Sharded (FSDP): every rank joins the gather, rank 0 gets a plain copy.
    Otherwise the training model itself on rank 0, with no copy and no collective. Takes
    Lightning's Trainer and LightningModule by their attributes, so this file needs no Lightning.
    """
    root = trainer.strategy.model
    if root is not None and sharding(root) != "none":
        return full_model(module.model, root, device=module.device)
    return module.model if trainer.is_global_zero else None


def _dtensor_state(model: nn.Module) -> dict[str, torch.Tensor] | None:
    """FSDP2: all-gather every DTensor (a collective per tensor, on every rank); rank 0 keeps
    them. Tied weights appear under both keys and are gathered twice, identically on all ranks."""
    keep = _rank() == 0
    state: dict[str, torch.Tensor] = {}
    for key, value in model.state_dict().items():
        full = value.full_tensor() if _is_dtensor(value) else value
        if keep:
            state[key] = full.detach()
    return state if keep else None


def _fsdp1_state(model: nn.Module, root: nn.Module) -> dict[str, torch.Tensor] | None:
    """FSDP1: the full state dict on rank 0 only, then `model`'s own keys without its prefix."""
    prefix = _prefix_of(model, root)
    on_gpu = any(p.device.type != "cpu" for p in root.parameters())
    # offload_to_cpu on tensors already on the host crashes torch 2.13 (SIGSEGV), so only on a GPU
    cfg = FullStateDictConfig(offload_to_cpu=on_gpu, rank0_only=True)
    with FSDP1.state_dict_type(root, StateDictType.FULL_STATE_DICT, cfg):
        full = root.state_dict()
    if _rank() != 0:
        return None
    return {k[len(prefix) :]: v for k, v in full.items() if k.startswith(prefix)}


def _prefix_of(model: nn.Module, root: nn.Module) -> str:
    """`model`'s key prefix in `root`'s state dict ('' when it is the root or its FSDP child)."""
    for name, module in root.named_modules():
        if module is model:
            return f"{name}.".replace(_FSDP1_PREFIX, "") if name else ""
    raise ValueError("full_model: `model` is not inside `root`")


def _plain_copy(
    model: Transformer, state: dict[str, torch.Tensor], device: torch.device | str
) -> Transformer:
    """A `Transformer` of the same config holding `state`. Built on the meta device, so it
    neither spends time on an init that is overwritten nor draws from the training RNG
    (rank 0's random stream must stay that of the other ranks)."""
    cfg = model.cfg
    with torch.device("meta"):
        copy = Transformer(cfg)
    if cfg.tie_embeddings:
        state.setdefault("lm_head.weight", state["tok_emb.weight"])
    copy.load_state_dict(state, strict=True, assign=True)
    if cfg.tie_embeddings:  # assign=True set the two keys as two parameters: tie them again
        copy.lm_head.weight = copy.tok_emb.weight
    return copy.to(device).eval()
