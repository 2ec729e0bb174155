"""The fixed probe set: held-out windows saved with the run, so every reanalysis sees the same tokens.

Stored as `<run_dir>/probe/probe_set.npz` (token ids and masks only, loadable without pickle)
and `<run_dir>/probe/probe_text.jsonl` (one decoded window per line, for people).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sinklab.runs.layout import RunLayout


@dataclass
class ProbeSet:
    input_ids: torch.Tensor  # Long[N, T]
    text: list[str]  # decoded windows
    trigger_mask: torch.Tensor | None = None  # Bool[N, T]; Bigram-Backcopy trigger positions
    has_bos: bool = False  # token 0 of every window is BOS

    def __post_init__(self) -> None:
        if self.input_ids.ndim != 2:
            raise ValueError(f"input_ids must be [N, T], got shape {tuple(self.input_ids.shape)}")
        if len(self.text) != self.input_ids.shape[0]:
            raise ValueError(f"{len(self.text)} texts for {self.input_ids.shape[0]} windows")
        if self.trigger_mask is not None and self.trigger_mask.shape != self.input_ids.shape:
            raise ValueError("trigger_mask must have the shape of input_ids")


def save_probe_set(probe: ProbeSet, run_dir: Path) -> Path:
    """Write the probe set under `<run_dir>/probe/`; returns that folder."""
    layout = RunLayout(run_dir)
    folder = layout.probe_dir
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "input_ids": probe.input_ids.cpu().numpy().astype(np.int64),
        "has_bos": np.array(bool(probe.has_bos)),
    }
    if probe.trigger_mask is not None:
        arrays["trigger_mask"] = probe.trigger_mask.cpu().numpy().astype(bool)
    np.savez(layout.probe_ids, **arrays)
    with open(layout.probe_text, "w", encoding="utf-8") as f:
        for i, text in enumerate(probe.text):
            f.write(json.dumps({"index": i, "text": text}, ensure_ascii=False) + "\n")
    return folder


def load_probe_set(run_dir: Path) -> ProbeSet:
    """Read a probe set written by `save_probe_set` (never unpickles anything)."""
    layout = RunLayout(run_dir)
    path = layout.probe_ids
    if not path.is_file():
        raise FileNotFoundError(f"no probe set at {path}")
    with np.load(path, allow_pickle=False) as data:
        ids = torch.from_numpy(data["input_ids"].astype(np.int64))
        trig = (
            torch.from_numpy(data["trigger_mask"].astype(bool)) if "trigger_mask" in data else None
        )
        has_bos = bool(data["has_bos"])
    text_path = layout.probe_text
    if text_path.is_file():
        with open(text_path, encoding="utf-8") as f:
            text = [json.loads(line)["text"] for line in f if line.strip()]
    else:
        text = [""] * ids.shape[0]
    return ProbeSet(input_ids=ids, text=text, trigger_mask=trig, has_bos=has_bos)
