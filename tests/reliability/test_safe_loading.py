"""Checkpoints load with weights_only=True everywhere, Lightning's resume included; a checkpoint
that needs code unpickled is refused (and its code never runs); weights round-trip through
safetensors with identical logits."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from sinklab.errors import ConfigError
from sinklab.model import ModelConfig
from sinklab.runs.checkpoints import (
    UnsafeCheckpointError,
    load_checkpoint_model,
    load_checkpoint_state,
    load_safetensors_model,
)
from sinklab.training import run as run_module
from sinklab.training.run import train, validate_config
from tests.reliability.helpers import run_in_process, tiny
from tests.training.conftest import compose_train


class Payload:
    """Unpickling this calls open(marker, "w"): the file appears if the code ever runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (open, (str(self.marker), "w"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("safe")
    run_dir = tmp / "run"
    run_dir.mkdir()
    train(validate_config(compose_train(tiny(tmp, 4))), run_dir)
    return run_dir


def _evil_copy(trained: Path, tmp: Path) -> tuple[Path, Path]:
    """A real checkpoint with one pickled object added."""
    marker = tmp / "code-ran"
    state = torch.load(trained / "checkpoints" / "last.ckpt", weights_only=True)
    state["payload"] = Payload(marker)
    path = tmp / "evil.ckpt"
    torch.save(state, path)
    return path, marker


def test_unsafe_checkpoint_is_refused_by_every_loader(trained: Path, tmp_path: Path) -> None:
    path, marker = _evil_copy(trained, tmp_path)
    for load in (load_checkpoint_state, load_checkpoint_model):
        with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
            load(path)
    assert not marker.exists()


def test_resuming_from_an_unsafe_checkpoint_exits_2_with_one_line(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, marker = _evil_copy(trained, tmp_path)
    code, line = run_in_process(tiny(tmp_path, 8) + [f"ckpt_path={path}"], tmp_path / "run", capsys)
    assert code == 2
    assert line.startswith("error: ckpt_path:") and "refusing to load" in line
    assert not marker.exists()
    assert not (tmp_path / "run").exists(), "a refused run leaves no folder behind"


def test_lightning_resume_itself_loads_with_weights_only(
    trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With our own pre-check switched off, Lightning's `trainer.fit(ckpt_path=...)` still refuses."""
    path, marker = _evil_copy(trained, tmp_path)
    monkeypatch.setattr(run_module, "read_resume_checkpoint", lambda _: ({}, 4))
    monkeypatch.setattr(run_module, "compare_model_configs", lambda *_: None)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with pytest.raises(pickle.UnpicklingError, match="weights_only"):
        train(validate_config(compose_train(tiny(tmp_path, 8) + [f"ckpt_path={path}"])), run_dir)
    assert not marker.exists()


def test_safetensors_export_round_trip_gives_identical_logits(trained: Path) -> None:
    from_ckpt, info = load_checkpoint_model(trained / "checkpoints" / "last.ckpt")
    cfg = ModelConfig.from_dict(info.model_config.to_dict())
    from_st = load_safetensors_model(trained / "model.safetensors", cfg)
    ids = torch.randint(0, cfg.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(from_ckpt(ids), from_st(ids))
    with open(trained / "model.safetensors", "rb") as fh:  # a safetensors file, not a pickle
        header = int.from_bytes(fh.read(8), "little")
        assert fh.read(1) == b"{" and header > 0


def test_resume_with_a_different_model_config_names_the_keys(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = tmp_path / "elsewhere.ckpt"  # outside a run folder: the run gets a new folder
    ckpt.write_bytes((trained / "checkpoints" / "last.ckpt").read_bytes())
    extra = [f"ckpt_path={ckpt}", "model.n_layers=3", "model.pos=alibi"]
    code, line = run_in_process(tiny(tmp_path, 8) + extra, tmp_path / "run", capsys)
    assert code == 2
    assert line.startswith("error: ckpt_path: checkpoint was trained with a different model config")
    assert (
        "model.n_layers (checkpoint 2, config 3)" in line
        and "model.pos (checkpoint 'rope', config 'alibi')" in line
    )
    assert not (tmp_path / "run").exists(), "a refused run leaves no folder behind"


def test_truncated_checkpoint_is_refused_as_unreadable(trained: Path, tmp_path: Path) -> None:
    data = (trained / "checkpoints" / "last.ckpt").read_bytes()
    path = tmp_path / "torn.ckpt"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError, match="not a readable checkpoint"):
        run_module.check_resume_compatible(str(path), {})
