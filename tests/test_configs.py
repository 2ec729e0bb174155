"""`sinklab.configs.from_mapping`: one validation path for every config section. Types come from
the dataclass annotations; every error is one `ConfigError` naming `section.key`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
from omegaconf import OmegaConf

from sinklab.configs import CONF_DIR, check_choices, coerce, conf_dir, from_mapping
from sinklab.errors import ConfigError, check

Colour = Literal["red", "green"]


@dataclass
class Inner:
    size: int = 1
    colour: Colour = "red"

    def __post_init__(self) -> None:
        check(self.size >= 1, "size", f"must be >= 1, got {self.size}")


@dataclass
class Outer:
    count: int = 0
    rate: float = 0.5
    flag: bool = False
    name: str = "x"
    limit: int | None = None
    mode: Colour | None = None
    width: Literal["32", "16-mixed"] = "32"
    pair: tuple[float, float] = (0.9, 0.95)
    keys: tuple[int, ...] = (0,)
    tags: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    anything: Any = None
    when: Literal["all", "log"] | tuple[int, ...] = "all"
    inner: Inner = field(default_factory=Inner)


def error(values: Any, section: str = "outer") -> ConfigError:
    with pytest.raises(ConfigError) as err:
        from_mapping(Outer, values, section)
    assert "\n" not in str(err.value)
    return err.value


def test_defaults_and_coercions() -> None:
    cfg = from_mapping(Outer, None, "outer")
    assert cfg == Outer()
    cfg = from_mapping(
        Outer,
        {
            "rate": 2,  # an int is a number
            "pair": [0.8, 0.9],  # YAML lists become tuples
            "keys": 3,  # one value for a list
            "tags": "a",
            "width": 32,  # a number read as its text when that is a choice
            "extra": None,  # null for a mapping: empty
            "inner": None,  # null for a section: its defaults
            "when": [4, 2],
            "anything": [1, "two"],
        },
        "outer",
    )
    assert cfg.rate == 2.0 and isinstance(cfg.rate, float)
    assert cfg.pair == (0.8, 0.9) and cfg.keys == (3,) and cfg.tags == ["a"]
    assert cfg.width == "32" and cfg.extra == {} and cfg.inner == Inner()
    assert cfg.when == (4, 2) and cfg.anything == [1, "two"]


def test_omegaconf_nodes_are_read_like_dicts() -> None:
    node = OmegaConf.create({"count": 3, "inner": {"size": 2}})
    assert from_mapping(Outer, node, "outer").inner.size == 2


@pytest.mark.parametrize(
    ("values", "key", "message"),
    [
        ({"count": "abc"}, "outer.count", "must be an integer, got 'abc'"),
        ({"count": 2.5}, "outer.count", "must be an integer, got 2.5"),
        ({"count": 2.0}, "outer.count", "must be an integer, got 2.0"),
        ({"count": True}, "outer.count", "must be an integer, got True"),
        ({"rate": "abc"}, "outer.rate", "must be a number, got 'abc'"),
        ({"rate": False}, "outer.rate", "must be a number, got False"),
        ({"flag": "yes"}, "outer.flag", "must be true or false, got 'yes'"),
        ({"flag": 1}, "outer.flag", "must be true or false, got 1"),
        ({"name": 3}, "outer.name", "must be a string, got 3"),
        ({"limit": "x"}, "outer.limit", "must be an integer or null, got 'x'"),
        (
            {"mode": "blue"},
            "outer.mode",
            "'blue' is not allowed; choose one of: red, green",
        ),
        ({"pair": [1]}, "outer.pair", "must be a list of 2 numbers, got [1]"),
        ({"keys": [1, "b"]}, "outer.keys", "must be a list of integers, got [1, 'b']"),
        ({"extra": [1]}, "outer.extra", "must be a mapping, got [1]"),
        (
            {"when": "some"},
            "outer.when",
            "'some' is not allowed; choose one of: all, log, a list of integers",
        ),
        ({"inner": {"colour": "blue"}}, "outer.inner.colour", "'blue' is not allowed"),
        ({"inner": {"size": 0}}, "outer.inner.size", "must be >= 1, got 0"),
        ({"inner": {"weight": 1}}, "outer.inner.weight", "unknown key; known keys: colour, size"),
        ({"inner": 5}, "outer.inner", "must be a mapping of its keys, got 5"),
        ({"colour": "red"}, "outer.colour", "unknown key; known keys: anything, count"),
    ],
)
def test_errors_name_the_key(values: dict, key: str, message: str) -> None:
    err = error(values)
    assert err.key == key
    assert str(err).startswith(f"{key}: {message}"), str(err)


def test_not_a_mapping_and_empty_section_name() -> None:
    assert error([1, 2]).key == "outer"
    assert error({"count": "x"}, section="").key == "count"


def test_required_fields_are_named() -> None:
    @dataclass
    class Needs:
        target: str

    with pytest.raises(ConfigError, match="^sec.target: required"):
        from_mapping(Needs, {}, "sec")


def test_post_init_keys_are_renamed_under_the_section() -> None:
    """A class that names its fields with its usual prefix, built under another section."""
    from sinklab.analysis.config import MetricsConfig

    with pytest.raises(ConfigError) as err:
        from_mapping(MetricsConfig, {"eps": 2.0}, "callbacks.probe.metrics")
    assert err.value.key == "callbacks.probe.metrics.eps"
    with pytest.raises(ConfigError) as err:
        from_mapping(MetricsConfig, {"eps": 2.0}, "metrics")
    assert err.value.key == "metrics.eps"


def test_check_choices_for_direct_construction() -> None:
    check_choices(Outer(), "outer")
    with pytest.raises(ConfigError, match=r"^outer.inner.colour: 'blue' is not allowed"):
        check_choices(Outer(inner=Inner(colour="blue")), "outer")  # type: ignore[arg-type]


def test_coerce_alone() -> None:
    assert coerce(int | None, None, "seed") is None
    with pytest.raises(ConfigError, match="^seed: must be an integer, got 'x'"):
        coerce(int, "x", "seed")


def _tree(root: Path, *files: str) -> None:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")


def test_conf_dir_prefers_the_checkout_then_the_packaged_copy(tmp_path: Path) -> None:
    checkout = tmp_path / "repo"  # an editable install: src/sinklab beside conf/
    _tree(checkout, "conf/train.yaml", "src/sinklab/configs.py", "src/sinklab/conf/train.yaml")
    assert conf_dir(checkout / "src" / "sinklab") == checkout / "conf"
    site = tmp_path / "venv" / "lib" / "python3.11" / "site-packages"  # a wheel
    _tree(site, "sinklab/configs.py", "sinklab/conf/train.yaml")
    assert conf_dir(site / "sinklab") == site / "sinklab" / "conf"
    bare = tmp_path / "bare"  # a folder named conf without the root config does not count
    _tree(bare, "conf/model/tiny.yaml", "src/sinklab/configs.py")
    with pytest.raises(FileNotFoundError, match="train.yaml"):
        conf_dir(bare / "src" / "sinklab")


def test_this_checkout_reads_its_own_conf() -> None:
    root = Path(__file__).resolve().parents[1]
    assert conf_dir() == root / "conf" and CONF_DIR == str(root / "conf")
