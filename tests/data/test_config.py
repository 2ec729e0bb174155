"""Bad configuration fails early with one line naming the key; every conf/data file is valid."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sinklab.data import DataConfig
from sinklab.data.config import DataConfig as _DC
from sinklab.errors import ConfigError
from sinklab.training.datamodule import SinkDataModule

CONF = Path(__file__).resolve().parents[2] / "conf" / "data"


@pytest.mark.parametrize(
    ("raw", "key", "words"),
    [
        ({"source": "wikipedia"}, "data.source", "shakespeare"),
        ({"seq_len": 1}, "data.seq_len", ">= 2"),
        ({"seq_len": 64, "min_context": 64}, "data.min_context", "< max_context"),
        ({"seq_len": 64, "min_context": 10, "max_context": 10}, "data.min_context", "10"),
        ({"seq_len": 64, "max_context": 65}, "data.max_context", "<= seq_len"),
        ({"bos": "sometimes"}, "data.bos", "every_window"),
        ({"first_token": "fixed"}, "data.first_token_id", "must be set"),
        ({"first_token": "random", "bos": "every_window"}, "data.first_token", "BOS"),
        ({"colour": "red"}, "data.colour", "unknown key"),
        ({"tokenizer": {"kind": "bpe", "size": 3}}, "data.tokenizer.size", "unknown key"),
        (
            {"tokenizer": {"kind": "file", "path": "/no/such/tokenizer.json"}},
            "data.tokenizer.path",
            "not found",
        ),
        ({"source": "text_files"}, "data.text_files.paths", "empty"),
        (
            {"source": "synthetic", "synthetic": {"kind": "zipf", "loss_on": "trigger"}},
            "data.synthetic.loss_on",
            "bigram_backcopy",
        ),
        ({"synthetic": {"kind": "markov"}}, "data.synthetic.kind", "bigram_backcopy"),
        ({"val_fraction": 1.5}, "data.val_fraction", "(0, 1)"),
        ({"batch_size": 0}, "data.batch_size", ">= 1"),
    ],
)
def test_bad_values_name_the_key(raw: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        DataConfig.from_dict(raw)
    assert err.value.key == key
    message = str(err.value)
    assert message.startswith(key) and words in message and "\n" not in message


def test_defaults_and_context_end() -> None:
    cfg = DataConfig.from_dict({})
    assert (cfg.source, cfg.seq_len, cfg.batch_size, cfg.bos) == ("shakespeare", 128, 16, "none")
    assert cfg.context_end == 128 and not cfg.probe_has_bos
    cfg = DataConfig.from_dict(
        {"seq_len": 64, "min_context": 8, "max_context": 32, "bos": "every_window"}
    )
    assert cfg.context_end == 32 and cfg.probe_has_bos


def test_cache_root_never_uses_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SINKLAB_CACHE", str(tmp_path / "env"))
    assert DataConfig.from_dict({}).cache_root() == tmp_path / "env"
    assert DataConfig.from_dict({"cache_dir": str(tmp_path / "c")}).cache_root() == tmp_path / "c"
    monkeypatch.delenv("SINKLAB_CACHE")
    assert DataConfig.from_dict({}).cache_root() == Path.home() / ".cache" / "sinklab"


def test_omegaconf_input_is_accepted() -> None:
    from omegaconf import OmegaConf

    cfg = DataConfig.from_dict(OmegaConf.create({"seq_len": 32, "probe": {"seq_len": 16}}))
    assert cfg.seq_len == 32 and cfg.probe.seq_len == 16


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_conf_files_set_every_key_and_validate(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    assert set(raw) == set(_DC().to_dict()), "each conf/data file sets every top-level key"
    if raw["source"] == "text_files":
        raw["text_files"]["paths"] = [__file__]
    assert raw["seed"] == "${seed}", "the batch order follows the run's top-level seed"
    raw["seed"] = 0  # what the root config interpolates (tests/training compose the real thing)
    DataConfig.from_dict(raw)


def test_first_token_id_outside_vocab(make_cfg) -> None:
    dm = SinkDataModule(make_cfg(first_token="fixed", first_token_id=5000))
    with pytest.raises(ConfigError, match="data.first_token_id"):
        dm.setup()
