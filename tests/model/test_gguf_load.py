"""Loading GGUF files of several architectures: tiny files written here with gguf's own writer
from random transformers models (the inverse of llama.cpp's conversion: Llama's q/k rows
permuted, Gemma's norm gains stored as 1 + w), read back through transformers' GGUF reader,
converted, and compared with the model they were written from. Files with a tensor too many or
too few, and architectures sinklab cannot convert, are refused in one line naming them."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from sinklab.errors import ConfigError
from sinklab.model.pretrained import convertible_architectures, load_hf_gguf_model

transformers = pytest.importorskip("transformers")
gguf = pytest.importorskip("gguf")

VOCAB = 96


def _llama() -> torch.nn.Module:
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=False,
    )
    return _randomized(transformers.LlamaForCausalLM(cfg))


def _gemma3() -> torch.nn.Module:
    """Six layers, so the reader's default 5:1 pattern gives five sliding and one full layer;
    the options a Gemma 3 GGUF does not store keep transformers' defaults (query_pre_attn_scalar
    256, local RoPE base 10000), as they do when the real file is read."""
    cfg = transformers.Gemma3TextConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=6,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=16,
        max_position_embeddings=64,
        sliding_window=5,
        rms_norm_eps=1e-6,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        },
        tie_word_embeddings=True,
        attn_implementation="eager",
    )
    return _randomized(transformers.Gemma3ForCausalLM(cfg))


def _randomized(model: torch.nn.Module) -> torch.nn.Module:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            p.add_(torch.randn(p.shape, generator=gen) * 0.2)
    return model.float().eval()


def _llama_permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q/k rows (transformers undoes it)."""
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def _to_gguf_tensor(arch: str, hf: torch.nn.Module) -> Callable[[str, np.ndarray], np.ndarray]:
    cfg = hf.config

    def convert(gguf_name: str, w: np.ndarray) -> np.ndarray:
        if arch == "llama" and ".attn_q." in gguf_name:
            return _llama_permute(w, cfg.num_attention_heads)
        if arch == "llama" and ".attn_k." in gguf_name:
            return _llama_permute(w, cfg.num_key_value_heads)
        if arch == "gemma3" and gguf_name.endswith("norm.weight"):
            return w + 1.0
        return w

    return convert


def _metadata(arch: str, hf: torch.nn.Module, writer) -> None:
    c = hf.config
    writer.add_uint32(f"{arch}.context_length", c.max_position_embeddings)
    writer.add_uint32(f"{arch}.embedding_length", c.hidden_size)
    writer.add_uint32(f"{arch}.block_count", c.num_hidden_layers)
    writer.add_uint32(f"{arch}.feed_forward_length", c.intermediate_size)
    writer.add_uint32(f"{arch}.attention.head_count", c.num_attention_heads)
    writer.add_uint32(f"{arch}.attention.head_count_kv", c.num_key_value_heads)
    writer.add_float32(f"{arch}.attention.layer_norm_rms_epsilon", c.rms_norm_eps)
    writer.add_uint32(f"{arch}.vocab_size", c.vocab_size)
    if arch == "gemma3":
        writer.add_uint32(f"{arch}.attention.key_length", c.head_dim)
        writer.add_uint32(f"{arch}.attention.value_length", c.head_dim)
        writer.add_uint32(f"{arch}.attention.sliding_window", c.sliding_window)
        writer.add_float32(f"{arch}.rope.freq_base", 1000000.0)
    else:
        writer.add_float32(f"{arch}.rope.freq_base", 10000.0)


def write_gguf(
    path: Path,
    arch: str,
    hf: torch.nn.Module,
    drop: tuple[str, ...] = (),
    extra: tuple[str, ...] = (),
) -> Path:
    """`hf`'s weights as a float32 GGUF file of architecture `arch`, as llama.cpp lays them out,
    leaving out the GGUF tensors in `drop` and adding zero tensors named in `extra`."""
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
    )

    processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)(config=hf.config.to_dict())
    hf_to_gguf = {v: k for k, v in get_gguf_hf_weights_map(hf, processor).items()}
    convert = _to_gguf_tensor(arch, hf)
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_string("general.name", f"tiny {arch}")
    _metadata(arch, hf, writer)
    tied = getattr(hf.config, "tie_word_embeddings", False)
    for name, tensor in hf.state_dict().items():
        if tied and name == "lm_head.weight":
            continue
        gguf_name = hf_to_gguf[name]
        if gguf_name not in drop:
            writer.add_tensor(gguf_name, convert(gguf_name, tensor.numpy().astype(np.float32)))
    for name in extra:
        writer.add_tensor(name, np.zeros(4, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, 14), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("arch, make", [("llama", _llama), ("gemma3", _gemma3)])
def test_gguf_reads_back_to_the_model_it_was_written_from(arch, make, tmp_path: Path) -> None:
    """The transformers model read from the file holds the original's weights (fp32 round
    trip; Gemma's 1 + w and back costs at most an ulp of the gain) and so its logits."""
    hf = make()
    loaded = load_hf_gguf_model(write_gguf(tmp_path / f"{arch}.gguf", arch, hf))
    assert type(loaded) is type(hf)
    theirs = hf.state_dict()
    for name, tensor in loaded.state_dict().items():
        torch.testing.assert_close(tensor, theirs[name], rtol=0, atol=1e-6, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(loaded(_ids()).logits, hf(_ids()).logits, rtol=0, atol=1e-4)


@pytest.mark.parametrize("arch, make", [("llama", _llama), ("gemma3", _gemma3)])
def test_the_sinklab_model_from_gguf_matches_transformers(arch, make, tmp_path: Path) -> None:
    """From file to sinklab model, through the converter registry: logits within 1e-4 of the
    model the file was written from (Gemma 3: both layer kinds, sequences past the window)."""
    from sinklab.model.convert import from_hf

    hf = make()
    ours = from_hf(load_hf_gguf_model(write_gguf(tmp_path / f"{arch}.gguf", arch, hf)))
    with torch.no_grad():
        expected = hf(_ids()).logits
        assert expected.std() > 0.1
        torch.testing.assert_close(ours(_ids()), expected, rtol=0, atol=1e-4)


@pytest.mark.parametrize("arch, make", [("llama", _llama), ("gemma3", _gemma3)])
def test_a_tensor_the_model_lacks_is_refused_by_name(arch, make, tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "x.gguf", arch, make(), extra=("blk.0.attn_extra.weight",))
    with pytest.raises(ConfigError) as err:
        load_hf_gguf_model(path)
    assert str(err.value) == (
        f"target: x.gguf: GGUF tensors do not match {type(make()).__name__}: "
        "missing none; unexpected ['blk.0.attn_extra.weight']"
    )


@pytest.mark.parametrize("arch, make", [("llama", _llama), ("gemma3", _gemma3)])
def test_a_tensor_the_file_lacks_is_refused_by_name(arch, make, tmp_path: Path) -> None:
    path = write_gguf(tmp_path / "x.gguf", arch, make(), drop=("blk.1.ffn_up.weight",))
    with pytest.raises(ConfigError) as err:
        load_hf_gguf_model(path)
    assert str(err.value) == (
        f"target: x.gguf: GGUF tensors do not match {type(make()).__name__}: "
        "missing ['model.layers.1.mlp.up_proj.weight']; unexpected none"
    )


def test_the_convertible_architectures_are_both_readers_and_converters() -> None:
    supported = convertible_architectures()
    assert {"llama", "gemma3"} <= set(supported)
    assert "mamba" not in supported  # transformers reads it, sinklab cannot convert it
    assert supported == sorted(supported)


@pytest.mark.parametrize("arch", ["mamba", "rwkv6"])  # read by transformers / by neither
def test_an_unconvertible_architecture_is_one_line(arch: str, tmp_path: Path) -> None:
    path = tmp_path / f"{arch}.gguf"
    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    supported = ", ".join(convertible_architectures())
    expected = f"target: {arch}.gguf: GGUF architecture {arch!r} cannot be converted; supported: {supported}"
    with pytest.raises(ConfigError, match=f"^{re.escape(expected)}$"):
        load_hf_gguf_model(path)
