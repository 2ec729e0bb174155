"""A probe set for an imported model: windows of a corpus cut with *that model's* tokenizer.

A pretrained model has no saved probe set, so we build one the way Gu et al. measured:
N evenly spaced windows of T tokens (default 100 x 64), no BOS unless asked. The windows
are spread over the whole corpus (not a seeded sample), so the probe is reproducible
without any seed. The streaming evaluation's stream and the W8A8 evaluation's windows and
calibration batches are cut from the same corpus the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from sinklab.data.config import DataConfig
from sinklab.data.probe_set import ProbeSet
from sinklab.data.run_data import QuantIds
from sinklab.data.sampling import evenly_spaced
from sinklab.data.sources import load_documents
from sinklab.errors import ConfigError


def corpus_documents(corpus: str, cache_dir: str | None = None) -> list[str]:
    """`shakespeare` (the offline default corpus) or a path / glob of local text files."""
    if corpus == "shakespeare":
        data = {"source": "shakespeare", "cache_dir": cache_dir}
    else:
        data = {"source": "text_files", "cache_dir": cache_dir, "text_files": {"paths": [corpus]}}
    try:
        return load_documents(DataConfig.from_dict(data))
    except ConfigError as err:
        raise ConfigError("corpus", str(err)) from None


def token_stream(tokenizer: Any, docs: list[str]) -> np.ndarray:
    """All documents tokenized without special tokens, joined end to end."""
    encoded = tokenizer(docs, add_special_tokens=False)["input_ids"]
    return np.concatenate([np.asarray(ids, dtype=np.int64) for ids in encoded if len(ids)])


def build_probe_set(
    tokenizer: Any, docs: list[str], n_windows: int = 100, seq_len: int = 64, bos: str = "none"
) -> ProbeSet:
    """`n_windows` windows of `seq_len` tokens; with bos="bos" token 0 is the model's BOS."""
    has_bos = bos == "bos"
    body = seq_len - 1 if has_bos else seq_len
    stream = token_stream(tokenizer, docs)
    if len(stream) < body:
        raise ConfigError(
            "seq_len", f"{seq_len} is longer than the whole corpus ({len(stream)} tokens)"
        )
    starts = evenly_spaced(len(stream), body, n_windows)
    ids = stream[starts[:, None] + np.arange(body)]
    if has_bos:
        bos_id = getattr(tokenizer, "bos_token_id", None)
        if bos_id is None:
            raise ConfigError("bos", "the tokenizer has no BOS token; use bos=none")
        ids = np.concatenate([np.full((n_windows, 1), bos_id, dtype=np.int64), ids], axis=1)
    text = [tokenizer.decode(row.tolist()) for row in ids]
    return ProbeSet(
        input_ids=torch.from_numpy(np.ascontiguousarray(ids)), text=text, has_bos=has_bos
    )


def build_stream(tokenizer: Any, docs: list[str], length: int, bos: str = "none") -> torch.Tensor:
    """The streaming evaluation's stream [length]: the corpus's first tokens, end to end
    (the documents as the probe set sees them), BOS first with bos="bos"."""
    has_bos = bos == "bos"
    stream = token_stream(tokenizer, docs)
    body = length - 1 if has_bos else length
    if len(stream) < body:
        raise ConfigError(
            "stream.stream_len", f"{length} is longer than the whole corpus ({len(stream)} tokens)"
        )
    ids = stream[:body]
    if has_bos:
        bos_id = getattr(tokenizer, "bos_token_id", None)
        if bos_id is None:
            raise ConfigError("bos", "the tokenizer has no BOS token; use bos=none")
        ids = np.concatenate([np.array([bos_id], dtype=np.int64), ids])
    return torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64))


def build_quant_ids(
    tokenizer: Any,
    docs: list[str],
    eval_windows: int,
    calib_shape: tuple[int, int],
    seq_len: int = 64,
    bos: str = "none",
) -> QuantIds:
    """The W8A8 evaluation's inputs for an imported model: `eval_windows` windows to score and
    `calib_shape` = (batches, windows per batch) to calibrate on, all `seq_len` tokens.

    E + C x B non-overlapping windows evenly spread over the corpus; the evaluation windows
    are those at evenly spaced ranks and calibration gets the rest, so static ranges are never
    calibrated on the text they are scored on (a run calibrates on training batches and scores
    validation windows). BOS first with bos="bos"; the tokenizer's BOS id is kept for the
    prefixes either way (-1: none).
    """
    n_batches, batch = calib_shape
    has_bos = bos == "bos"
    body = seq_len - 1 if has_bos else seq_len
    stream = token_stream(tokenizer, docs)
    total = eval_windows + n_batches * batch
    if total * body > len(stream):
        raise ConfigError(
            "quant.eval_windows",
            f"{eval_windows} evaluation + {n_batches} x {batch} calibration windows of "
            f"{seq_len} tokens need {total * body} tokens; the corpus has {len(stream)}",
        )
    starts = evenly_spaced(len(stream), body, total)  # spacing >= body: no overlap
    ids = stream[starts[:, None] + np.arange(body)]
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if has_bos:
        if bos_id is None:
            raise ConfigError("bos", "the tokenizer has no BOS token; use bos=none")
        ids = np.concatenate([np.full((total, 1), bos_id, dtype=np.int64), ids], axis=1)
    scored = np.zeros(total, dtype=bool)
    scored[np.linspace(0, total - 1, eval_windows).round().astype(np.int64)] = True
    calib = ids[~scored].reshape(n_batches, batch, seq_len)
    return QuantIds(
        torch.from_numpy(np.ascontiguousarray(ids[scored])),
        torch.from_numpy(np.ascontiguousarray(calib)),
        torch.tensor(-1 if bos_id is None else int(bos_id)),
    )


def load_pretrained(
    kind: str, path: Path | None, cache_dir: str | None = None
) -> tuple[torch.nn.Module, Any]:
    """(sinklab model, tokenizer) for a pretrained target; imports stay lazy (transformers is slow)."""
    if kind == "smollm2":
        from sinklab.model.pretrained import load_smollm2

        return load_smollm2(cache_dir)
    if kind == "gemma3":
        from sinklab.model.pretrained import load_gemma3

        return load_gemma3(cache_dir)
    if kind == "gguf":
        from sinklab.model.pretrained import load_gguf

        return load_gguf(path)
    from sinklab.model.convert import load_hf

    return load_hf(path)
