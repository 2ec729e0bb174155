"""Which scaled-dot-product-attention kernel a model variant actually runs.

The fused path only reaches the flash kernel when no `attn_mask` tensor is passed (see
docs on `scaled_dot_product_attention` and conventions.md). Rather than trust that reading of
the code, this runs one forward and backward under the profiler and reports the SDPA ops that
ran; on a GPU it also forces the flash backend, which raises if the variant cannot use it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.profiler import ProfilerActivity, profile

from sinklab.model import ModelConfig, Transformer


@dataclass
class KernelReport:
    variant: str
    sdpa_ops: list[str]
    flash: bool  # a flash-attention op ran
    forced_flash_ok: bool | None  # GPU only: the forced flash backend accepted the variant
    note: str = ""


def _sdpa_ops(
    model: Transformer, ids: torch.Tensor, device: torch.device, dtype: torch.dtype
) -> list[str]:
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            logits = model(ids)
        logits.float().sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
    names = {evt.key for evt in prof.key_averages()}
    # The dispatcher's choice shows as aten::_scaled_dot_product_<backend>[_for_cpu]; on a GPU,
    # the kernels themselves (flash_fwd..., fmha_cutlass..., cudnn...) are listed too.
    ops = {
        n
        for n in names
        if n.startswith("aten::_scaled_dot_product") and not n.endswith("_backward")
    }
    kernels = {
        n
        for n in names
        if not n.startswith(("aten::", "autograd::", "Scaled"))
        and ("flash" in n.lower() or "fmha" in n.lower())
    }
    return sorted(ops) + sorted(kernels)[:3]


def _forced_flash(model: Transformer, ids: torch.Tensor, dtype: torch.dtype) -> tuple[bool, str]:
    from torch.nn.attention import SDPBackend, sdpa_kernel

    try:
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION), torch.autocast("cuda", dtype=dtype):
            model(ids).float().sum().backward()
        return True, ""
    except RuntimeError as err:
        return False, str(err).splitlines()[0][:120]


def attention_kernel_report(
    model_dict: dict, variant: str, device: str = "cpu", seq_len: int = 128, batch: int = 2
) -> KernelReport:
    """Profile one fwd+bwd of `model_dict` and report its SDPA kernels (bf16 on a GPU)."""
    dev = torch.device(device)
    dtype = torch.float32 if dev.type == "cpu" else torch.bfloat16
    cfg = ModelConfig.from_dict(model_dict)
    model = Transformer(cfg).to(dev).train()
    ids = torch.randint(0, cfg.vocab_size, (batch, seq_len), device=dev)
    ops = _sdpa_ops(model, ids, dev, dtype)
    flash = any("flash" in op.lower() for op in ops)
    forced, note = (None, "")
    if dev.type == "cuda":
        model.zero_grad(set_to_none=True)
        forced, note = _forced_flash(model, ids, dtype)
    if not ops:
        note = note or "no SDPA op: explicit matmul + normalisation path"
    return KernelReport(
        variant=variant, sdpa_ops=ops, flash=flash, forced_flash_ok=forced, note=note
    )
