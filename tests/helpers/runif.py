"""`RunIf`, after Lightning's test helper: one skip mark that states what a test needs, so
GPU-only tests skip cleanly where there is none (CI, the 2-core VM) and run where there is.

    pytestmark = [pytest.mark.gpu, RunIf(min_cuda_gpus=1, bf16_cuda=True)]
"""

from __future__ import annotations

import pytest
import torch


def _cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def RunIf(  # noqa: N802 (named like Lightning's, which reads as a mark)
    *, min_cuda_gpus: int = 0, bf16_cuda: bool = False, compile: bool = False
) -> pytest.MarkDecorator:
    """A `skipif` mark that is true when any requirement is unmet; its reason names them all.

    min_cuda_gpus: at least this many CUDA devices; bf16_cuda: the first one does bf16;
    compile: `torch.compile` can build GPU kernels (Triton importable).
    """
    missing = []
    gpus = _cuda_count()
    if gpus < min_cuda_gpus:
        missing.append(f"needs {min_cuda_gpus} CUDA GPU(s), found {gpus}")
    if bf16_cuda and not (gpus and torch.cuda.is_bf16_supported()):
        missing.append("needs a CUDA GPU with bf16")
    if compile and not _has_triton():
        missing.append("needs Triton for torch.compile on the GPU")
    return pytest.mark.skipif(bool(missing), reason="; ".join(missing) or "runs")


def _has_triton() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True
