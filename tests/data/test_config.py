"""Bad configuration fails early with one line naming the key; every conf/data file is valid
and inherits its keys from conf/data/base.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from sinklab.configs import compose_section
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
        ({"end_token": True}, "data.end_token", "needs objective=mlm"),
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


def test_base_file_sets_every_key_and_the_others_inherit_it() -> None:
    """conf/data/base.yaml holds every key with its default; each other file starts from it
    and states only its differences (so no key is set twice to the same value)."""
    base = yaml.safe_load((CONF / "base.yaml").read_text())
    assert set(base) == set(_DC().to_dict()), "base.yaml sets every top-level key"
    assert base["seed"] == "${seed}", "the batch order follows the run's top-level seed"
    for path in sorted(CONF.glob("*.yaml")):
        if path.stem == "base":
            continue
        raw = yaml.safe_load(path.read_text())
        assert raw.pop("defaults") == ["base", "_self_"], path.name
        for key, value in raw.items():
            if isinstance(value, dict):
                for sub, v in value.items():
                    assert base[key][sub] != v, f"{path.name}: {key}.{sub} repeats base.yaml"
            elif key != "source":  # source names the choice, even where base agrees
                assert base[key] != value, f"{path.name}: {key} repeats base.yaml"


@pytest.mark.parametrize("path", sorted(CONF.glob("*.yaml")), ids=lambda p: p.stem)
def test_conf_files_compose_and_validate(path: Path, tmp_path: Path) -> None:
    raw = compose_section("data", path.stem, [f"paths.cache_dir={tmp_path}"])
    assert set(raw) == set(_DC().to_dict())
    if raw["source"] == "text_files":
        raw["text_files"]["paths"] = [__file__]
    cfg = DataConfig.from_dict(raw)
    assert cfg.source == path.stem or path.stem in ("base", "bigram_backcopy")
    assert cfg.cache_dir == str(tmp_path)


@pytest.mark.parametrize(
    ("raw", "key", "message"),
    [
        ({"batch_size": 2.5}, "data.batch_size", "must be an integer, got 2.5"),
        ({"seq_len": "64"}, "data.seq_len", "must be an integer, got '64'"),
        ({"val_fraction": "a"}, "data.val_fraction", "must be a number, got 'a'"),
        (
            {"tokenizer": {"kind": "x"}},
            "data.tokenizer.kind",
            "'x' is not allowed; choose one of: bpe, byte, char, file",
        ),
        ({"probe": {"bos": True}}, "data.probe.bos", "True is not allowed; choose one of: auto"),
        (
            {"hf_dataset": {"streaming": "yes"}},
            "data.hf_dataset.streaming",
            "must be true or false, got 'yes'",
        ),
        ({"tokenizer": 3}, "data.tokenizer", "must be a mapping of its keys, got 3"),
        (
            {"text_files": {"paths": [1]}},
            "data.text_files.paths",
            "must be a list of strings, got [1]",
        ),
        ({"max_context": "x"}, "data.max_context", "must be an integer or null, got 'x'"),
        ({"end_token": "yes"}, "data.end_token", "must be true or false, got 'yes'"),
    ],
)
def test_wrong_types_are_one_line_errors(raw: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        DataConfig.from_dict(raw)
    assert err.value.key == key
    assert str(err.value).startswith(f"{key}: {message}"), str(err.value)


def test_one_path_without_brackets_is_a_list() -> None:
    cfg = DataConfig.from_dict({"text_files": {"paths": __file__}, "source": "text_files"})
    assert cfg.text_files.paths == [__file__]
    assert DataConfig.from_dict({"probe": None}).probe.n_windows == 100  # null: the defaults


def test_first_token_id_outside_vocab(make_cfg) -> None:
    dm = SinkDataModule(make_cfg(first_token="fixed", first_token_id=5000))
    with pytest.raises(ConfigError, match="data.first_token_id"):
        dm.setup()
