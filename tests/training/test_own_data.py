"""Your own text: `experiment=text` is the real-text recipe (AdamW at lr 3e-3, BOS at every
window) on `data=text_files`, named "text", not Bigram-Backcopy's recipe or "shakespeare_text";
a run on three files names its folder after it, prints the split and warns about it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from tests.training.conftest import compose_train

STORY = "The sea was calm that night, and the boat rode low. " * 24


def _flat(cfg) -> dict[str, object]:
    tree = OmegaConf.to_container(cfg, resolve=True)
    tree.pop("hydra", None)
    out: dict[str, object] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            out[prefix[:-1]] = node

    walk(tree, "")
    return out


def test_the_text_recipe_is_shakespeare_text_on_your_files(tmp_path: Path) -> None:
    paths = [f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path / 'cache'}"]
    text = _flat(compose_train(["experiment=text", *paths]))
    assert (text["data.source"], text["experiment_name"]) == ("text_files", "text")
    assert (text["optim.name"], text["optim.lr"], text["optim.weight_decay"]) == (
        "adamw",
        3.0e-3,
        0.5,
    )
    assert text["data.bos"] == "every_window"
    shakespeare = _flat(compose_train(["experiment=shakespeare_text", *paths]))
    differ = {k for k in text.keys() | shakespeare.keys() if text.get(k) != shakespeare.get(k)}
    assert differ == {"data.source", "experiment_name"}
    # the default recipe, for contrast: what `data=text_files` alone kept
    quick = _flat(compose_train(["data=text_files", *paths]))
    assert (quick["optim.lr"], quick["data.bos"], quick["experiment_name"]) == (
        1.0e-2,
        "none",
        "quickstart",
    )


def test_a_run_on_three_files_is_named_text_and_warns_about_its_split(tmp_path: Path) -> None:
    books = tmp_path / "books"
    books.mkdir()
    for i in range(3):
        (books / f"book{i}.txt").write_text(f"Book {i}. {STORY}")
    args = [
        "experiment=text",
        f"data.text_files.paths=[{books}/*.txt]",
        f"paths.output_dir={tmp_path / 'outputs'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
        "logger=csv",
        "model.d_model=32",
        "model.n_layers=1",
        "data.tokenizer.kind=byte",
        "data.seq_len=32",
        "data.batch_size=4",
        "data.val_batches=1",
        "data.probe.n_windows=4",
        "data.probe.seq_len=16",
        "callbacks.probe.stream.enabled=false",
        "callbacks.probe.quant.enabled=false",
        "callbacks.probe.interventions.enabled=false",
        "callbacks.checkpoint.enabled=false",
        "trainer.max_steps=2",
        "trainer.val_every_n_steps=2",
        "trainer.threads=1",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "sinklab.train", *args],
        cwd=tmp_path,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    assert run_dir.name.endswith("-text")
    shown = proc.stdout + proc.stderr
    assert "3 documents" in shown and "validation 1 document (" in shown
    assert "data.val_fraction: the validation split holds 1 of 3 documents" in shown
    assert "data.text_files.sample_by=paragraph" in shown
