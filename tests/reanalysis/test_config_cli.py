"""Options and targets are checked before any work: one-line errors, exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sinklab.errors import ConfigError
from sinklab.reanalysis import from_mapping
from sinklab.reanalysis.targets import select_steps
from sinklab.runs.checkpoints import CheckpointFile

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ({"target": ""}, "target"),
        ({"target": "x", "steps": "some"}, "steps"),
        ({"target": "x", "steps": [1, -2]}, "steps"),
        ({"target": "x", "groups": ["sinks", "vibes"]}, "groups"),
        ({"target": "x", "bos": "yes"}, "bos"),
        ({"target": "x", "batch_size": 0}, "batch_size"),
        ({"target": "x", "device": "tpu:banana"}, "device"),
        ({"target": "x", "colour": "red"}, "colour"),
        ({"target": "x", "force": "yes"}, "force"),
        ({"target": "x", "n_windows": 2.5}, "n_windows"),
        ({"target": "x", "paths": {"output": "o"}}, "paths.output"),
        ({"target": "x", "metrics": [1]}, "metrics"),
    ],
)
def test_bad_options_name_their_key(raw: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_mapping(raw)
    assert err.value.key == key and "\n" not in str(err.value)


def test_options_are_read_like_every_other_section() -> None:
    cfg = from_mapping(
        {
            "target": " x ",
            "steps": 8,
            "groups": "sinks, qk",
            "metrics": None,
            "paths": {"output_dir": "out", "cache_dir": None},
        }
    )
    assert (cfg.target, cfg.steps, cfg.groups, cfg.metrics) == ("x", (8,), ("sinks", "qk"), {})
    assert (cfg.output_dir, cfg.cache_dir) == ("out", None)
    assert from_mapping({"target": "x", "steps": [4, 0, 4]}).steps == (0, 4)
    with pytest.raises(ConfigError) as err:
        from_mapping({"target": "x", "steps": "some"})
    assert str(err.value) == (
        "steps: 'some' is not allowed; choose one of: all, log, last, a list of integers"
    )


def test_bad_targets(tmp_path: Path) -> None:
    from sinklab.reanalysis.targets import resolve

    (tmp_path / "empty").mkdir()
    (tmp_path / "loose.ckpt").write_bytes(b"x")
    for target in (
        str(tmp_path / "nope"),
        str(tmp_path / "empty"),
        str(tmp_path / "loose.ckpt"),
        f"hf:{tmp_path}",
        "gguf:/no/file.gguf",
    ):
        with pytest.raises(ConfigError, match="^target: "):
            resolve(target)


def test_log_steps_keep_zero_powers_of_two_and_last() -> None:
    ckpts = [
        CheckpointFile(Path(f"{s}.ckpt"), s, s * 10) for s in (0, 1, 2, 3, 4, 8, 100, 200, 300)
    ]
    keep, missing = select_steps(ckpts, "log")
    assert [c.step for c in keep] == [0, 1, 2, 4, 8, 300] and missing == []
    keep, missing = select_steps(ckpts, "last")
    assert [c.step for c in keep] == [300] and missing == []
    assert select_steps([], "last") == ([], [])


def test_cli_bad_target_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sinklab.analyze", f"target={tmp_path / 'missing'}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: target: ") and "\n" not in done.stderr.strip()
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_old_flat_quant_command_lines_keep_their_meaning() -> None:
    """The study post-step's line (`quant.bits=4 'quant.prefixes=[...]'`), written before
    `quant` had its sections, composes to the same overrides as the nested keys."""
    from hydra import compose, initialize_config_dir

    from sinklab.analyze import nested_overrides
    from sinklab.configs import CONF_DIR

    old = ["target=x", "quant.enabled=true", "quant.bits=4"]
    old.append("quant.prefixes=[bos,prefixquant,cushioncache]")
    new = ["target=x", "quant.enabled=true", "quant.quantizer.bits=4"]
    new.append("quant.prefix.prefixes=[bos,prefixquant,cushioncache]")
    assert nested_overrides(old) == new
    assert nested_overrides(["stream.cache_len=4", "quant.from_step=2"]) == [
        "stream.cache_len=4",
        "quant.from_step=2",
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = from_mapping(compose(config_name="analyze", overrides=nested_overrides(old)))
    assert cfg.quant == {
        "enabled": True,
        "quantizer": {"bits": 4},
        "prefix": {"prefixes": ["bos", "prefixquant", "cushioncache"]},
    }
    assert cfg.stream == {}  # every null key: the run's own settings
