"""Issue 16's bad-input list, at each entry point: bits outside 2-16, an unknown mode, zero
calibration batches, a prefix longer than the model's window, eta <= 1. Each is one line naming
the key, raised before any work: `callbacks.probe.quant.*` for training (validated with the run
config), `quant.*` for sinklab-analyze."""

from __future__ import annotations

from pathlib import Path

import pytest

from sinklab.errors import ConfigError
from sinklab.reanalysis import from_mapping
from sinklab.reanalysis.runner import analyze
from sinklab.training.run import validate_config
from tests.reanalysis.test_hf_target import TEXT, _tiny_llama_folder
from tests.training.conftest import compose_train, tiny_overrides

BAD = [  # (key, value, what the message says): keys of the nested quantizer / prefix sections
    ("quantizer.bits", "1", "must be in 2..16, got 1"),
    ("quantizer.bits", "17", "must be in 2..16, got 17"),
    (
        "quantizer.modes",
        "[per_tensor_static,per_row]",
        "must be a list of: per_tensor_static, per_tensor_dynamic, per_token_dynamic",
    ),
    ("quantizer.calibration_batches", "0", "must be >= 1, got 0"),
    ("prefix.eta", "1.0", "must be > 1, got 1.0"),
]


@pytest.mark.parametrize(("key", "value", "says"), BAD)
def test_training_refuses_each_with_one_line(tmp_path: Path, key: str, value: str, says: str):
    quant = ["callbacks.probe.quant.enabled=true", f"callbacks.probe.quant.{key}={value}"]
    with pytest.raises(ConfigError) as err:
        validate_config(compose_train(tiny_overrides(tmp_path) + quant))
    assert err.value.key == f"callbacks.probe.quant.{key}"
    assert str(err.value).startswith(f"callbacks.probe.quant.{key}: {says}")
    assert "\n" not in str(err.value)


def test_training_refuses_a_prefix_longer_than_the_window(tmp_path: Path) -> None:
    # windows of 32 (data.seq_len), model.max_seq_len 64: a 33-token prefix does not fit
    quant = ["callbacks.probe.quant.enabled=true", "callbacks.probe.quant.prefix.prefixes=[bos]"]
    with pytest.raises(ConfigError) as err:
        validate_config(
            compose_train(
                tiny_overrides(tmp_path) + [*quant, "callbacks.probe.quant.prefix.max_len=33"]
            )
        )
    assert str(err.value) == (
        "callbacks.probe.quant.prefix.max_len: a 33-token prefix plus 32-token windows needs 65 "
        "positions; the model has 64"
    )
    # 32 fits exactly, and sink tokens take their share of the window
    ok = validate_config(
        compose_train(
            tiny_overrides(tmp_path) + [*quant, "callbacks.probe.quant.prefix.max_len=32"]
        )
    )
    assert ok.probe.quant.prefix.max_len == 32
    with pytest.raises(ConfigError, match=r"^callbacks\.probe\.quant\.prefix\.max_len: .* has 62$"):
        validate_config(
            compose_train(
                tiny_overrides(tmp_path)
                + [*quant, "callbacks.probe.quant.prefix.max_len=32", "model.n_sink_tokens=2"]
            )
        )


@pytest.mark.parametrize(("key", "value", "says"), BAD)
@pytest.mark.parametrize("layout", ["nested", "flat"])
def test_analyze_refuses_each_with_one_line(key: str, value: str, says: str, layout: str) -> None:
    parsed = value.strip("[]").split(",") if value.startswith("[") else float(value)
    section, leaf = key.split(".")
    if leaf != "eta" and not isinstance(parsed, list):
        parsed = int(parsed)
    # the flat layout (quant.bits=1) is the old command line's: it names the nested key
    given = {section: {leaf: parsed}} if layout == "nested" else {leaf: parsed}
    with pytest.raises(ConfigError) as err:
        from_mapping({"target": "smollm2", "quant": {"enabled": True, **given}})
    assert err.value.key == f"quant.{key}"
    assert str(err.value).startswith(f"quant.{key}: {says}") and "\n" not in str(err.value)


def test_analyze_refuses_a_prefix_longer_than_a_pretrained_models_window(tmp_path: Path) -> None:
    folder = tmp_path / "tiny-llama"
    _tiny_llama_folder(folder)  # max_position_embeddings 64
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    out = tmp_path / "out"
    cfg = {"target": f"hf:{folder}", "corpus": str(corpus), "n_windows": 2, "seq_len": 62}
    cfg |= {"out_dir": str(out), "progress": False}
    cfg["quant"] = {"enabled": True, "prefixes": ["bos"], "max_len": 3}
    with pytest.raises(ConfigError) as err:
        analyze(from_mapping(cfg))
    assert str(err.value) == (
        "quant.prefix.max_len: a 3-token prefix plus 62-token windows needs 65 positions; the model has 64"
    )
    assert not out.exists()  # refused before anything was measured or written
