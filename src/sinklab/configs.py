"""Turn plain config mappings (Hydra sections) into validated dataclasses.

Every section of the Hydra config maps onto one dataclass, and `from_mapping` is the one way a
section becomes one: unknown keys and wrong types fail here, with `section.key` named, in the
same one-line `ConfigError` a wrong value gives, before anything is built or written. Types
come from the dataclass's annotations, so the allowed values of a choice live in its
`Literal[...]` type and nowhere else.

Rules, per field type:
    int            an int (not a bool; 2.0 is refused like 2.5)
    float          an int or a float (not a bool), stored as float
    bool           true or false only
    str            a string only (quote numbers in YAML: version: '0.6')
    Literal[...]   one of the values; a number is read as its text when that is a choice
                   (trainer.precision=32 -> "32")
    X | None       null, or an X
    A | B          the first of A, B that accepts the value
    list[X], tuple[X, ...]
                   a list (YAML's form) of X; a single value becomes a one-item list
    tuple[X, Y]    a list of exactly two, each checked
    dict, Any      passed through (dict: must be a mapping)
    a dataclass    a mapping, built by `from_mapping` under `section.field`
A null for a non-optional list, mapping or nested section means empty (or all defaults): that
is what YAML gives for `key:` with nothing after it. After coercion the dataclass is built, so
its own `__post_init__` checks (ranges, combinations) still run.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import sys
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from sinklab.errors import (
    EXIT_CONFIG,
    EXIT_OUTPUT,
    ConfigError,
    check_choice,
    describe_os_error,
    did_you_mean,
)

T = TypeVar("T")


def conf_dir(package: Path | None = None) -> Path:
    """The Hydra config tree, for the entry points, the bench and the tests.

    A source checkout (an editable install) reads the repository's top-level conf/, so edits
    there are live; a wheel carries the same tree as `sinklab/conf` (setup.py copies it in at
    build time), since an installed package has no repository beside it. `package` (this
    package's folder by default) is there for the tests."""
    here = package or Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "conf", here / "conf"):  # checkout first, then packaged
        if (candidate / "train.yaml").is_file():
            return candidate
    raise FileNotFoundError(
        f"no Hydra config tree: neither {here.parents[1] / 'conf'} nor {here / 'conf'} holds "
        "train.yaml; reinstall sinklab (the wheel carries conf/ as sinklab/conf)"
    )


CONF_DIR = str(conf_dir())  # conf_dir() once, as the string @hydra.main takes

_SCALARS: dict[type, tuple[str, str]] = {  # type -> (one, many): words for error messages
    int: ("an integer", "integers"),
    float: ("a number", "numbers"),
    bool: ("true or false", "true/false values"),
    str: ("a string", "strings"),
}


class _Mismatch(Exception):
    """A value does not fit a type. `expected` is the type in words; `message` (a choice
    error) replaces the generic 'must be <expected>, got <value>'."""

    def __init__(self, expected: str, message: str | None = None) -> None:
        super().__init__(expected)
        self.expected = expected
        self.message = message


def from_mapping(cls: type[T], values: Any, section: str) -> T:
    """Build dataclass `cls` from `values` (a mapping, an OmegaConf node or None), checking
    every key against the field's type; errors are ConfigErrors naming `section.key`."""
    values = plain(values)
    if values is None:
        values = {}
    if not isinstance(values, Mapping):
        raise ConfigError(section or "config", f"must be a mapping, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        name = _join(section, str(key))
        if key not in fields:
            raise ConfigError(
                name,
                f"unknown key;{did_you_mean(name, [_join(section, f) for f in fields])} known keys: {', '.join(sorted(fields))}",
            )
        kwargs[key] = coerce(hints[key], value, name)
    for f in fields.values():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.init and required and f.name not in kwargs:
            raise ConfigError(_join(section, f.name), "required; it has no default")
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise _under(err, section, fields) from None


def compose_section(group: str, option: str, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """One option of a conf/ group (`compose_section("model", "gu60m")`) as a plain, resolved
    mapping. Group files inherit from their group's base.yaml, so read them through Hydra,
    never with a bare YAML load; `overrides` are Hydra overrides of the whole train config."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=["~experiment", "~scale", f"{group}={option}", *overrides],
        )
    section = OmegaConf.to_container(cfg[group], resolve=True)
    assert isinstance(section, dict)
    return section


def coerce(tp: Any, value: Any, key: str) -> Any:
    """`value` checked against (and converted to) type `tp`; a ConfigError names `key`."""
    try:
        return _coerce(tp, value, key)
    except _Mismatch as err:
        raise ConfigError(key, err.message or f"must be {err.expected}, got {value!r}") from None


def check_choices(obj: Any, section: str) -> None:
    """Check every `Literal` field of dataclass `obj` (and of its nested dataclasses), for code
    that builds a config directly; the allowed values come from the type alone."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = _join(section, f.name)
        if dataclasses.is_dataclass(value):
            check_choices(value, key)
            continue
        choices = literal_values(_hints(type(obj))[f.name])
        if choices and not (value is None and _optional(_hints(type(obj))[f.name])):
            check_choice(key, value, choices)


def literal_values(tp: Any) -> tuple[Any, ...]:
    """The values of `Literal[...]` (or of `Literal[...] | None`); () for any other type,
    a union with a non-Literal member included."""
    if get_origin(tp) is Literal:
        return get_args(tp)
    members = [a for a in get_args(tp) if a is not type(None)] if _is_union(tp) else []
    if members and all(get_origin(a) is Literal for a in members):
        return tuple(v for arg in members for v in get_args(arg))
    return ()


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    if tp is Any:
        return value
    origin = get_origin(tp)
    if _is_union(tp):
        return _union(tp, value, key)
    if origin is Literal:
        return _literal(get_args(tp), value, key)
    if tp in _SCALARS:
        return _scalar(tp, value)
    if tp is dict or origin in (dict, Mapping):
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise _Mismatch("a mapping")
        return dict(value)
    if tp in (list, tuple) or origin in (list, tuple):
        return _sequence(tp, value, key)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if value is not None and not isinstance(value, Mapping):
            raise _Mismatch("a mapping of its keys")
        return from_mapping(tp, value, key)
    return value  # a type with no rule here (Path, a class): the dataclass checks it


def _scalar(tp: type, value: Any) -> Any:
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is str:
        ok = isinstance(value, str)
    else:  # int, float: never a bool; float takes ints too
        numeric = (int,) if tp is int else (int, float)
        ok = isinstance(value, numeric) and not isinstance(value, bool)
    if not ok:
        raise _Mismatch(_SCALARS[tp][0])
    return float(value) if tp is float else value


def _literal(choices: tuple[Any, ...], value: Any, key: str) -> Any:
    for choice in choices:  # `type(...) is` so that True never passes for 1
        if type(choice) is type(value) and choice == value:
            return value
    if isinstance(value, (int, float)) and not isinstance(value, bool) and str(value) in choices:
        return str(value)  # trainer.precision=32 -> "32"
    try:
        check_choice(key, value, choices)
    except ConfigError as err:
        raise _Mismatch(f"one of: {', '.join(map(str, choices))}", _message(err)) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _sequence(tp: Any, value: Any, key: str) -> Any:
    args = get_args(tp)
    container = tuple if tp is tuple or get_origin(tp) is tuple else list
    fixed = container is tuple and args and not (len(args) == 2 and args[1] is Ellipsis)
    item_types = list(args) if fixed else [args[0] if args else Any]
    if value is None and not fixed:
        return container()
    if isinstance(value, Mapping) or value is None:
        raise _Mismatch(_describe(tp))
    if not isinstance(value, (list, tuple)):
        if fixed:
            raise _Mismatch(_describe(tp))
        value = [value]  # one value for a list: `paths=a.txt` means `paths=[a.txt]`
    if fixed and len(value) != len(item_types):
        raise _Mismatch(_describe(tp))
    out = []
    for i, item in enumerate(value):
        try:
            out.append(_coerce(item_types[i] if fixed else item_types[0], item, key))
        except _Mismatch:
            raise _Mismatch(_describe(tp)) from None
    return container(out)


def _union(tp: Any, value: Any, key: str) -> Any:
    members = [a for a in get_args(tp) if a is not type(None)]
    optional = len(members) < len(get_args(tp))
    if value is None and optional:
        return None
    failures: list[_Mismatch] = []
    for member in members:
        try:
            return _coerce(member, value, key)
        except _Mismatch as err:
            failures.append(err)
    if len(failures) == 1:
        err = failures[0]
        if err.message:  # a choice: keep check_choice's wording
            raise err
        raise _Mismatch(f"{err.expected} or null" if optional else err.expected)
    words = [f.expected for f in failures] + (["null"] if optional else [])
    choice = next((f for f in failures if f.message), None)
    if choice is not None and isinstance(value, str):  # a word that is not a choice
        others = [f.expected for f in failures if f is not choice]
        raise _Mismatch(
            " or ".join(words),
            f"{value!r} is not allowed; choose one of: "
            + ", ".join([choice.expected.removeprefix("one of: "), *others]),
        )
    raise _Mismatch(" or ".join(words))


def _describe(tp: Any) -> str:
    """A type in the words of an error message."""
    if tp in _SCALARS:
        return _SCALARS[tp][0]
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return f"one of: {', '.join(map(str, args))}"
    if origin in (list, tuple) or tp in (list, tuple):
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(set(args)) == 1 and args[0] in _SCALARS:
                return f"a list of {len(args)} {_SCALARS[args[0]][1]}"
            return f"a list of {len(args)} values"
        item = args[0] if args else Any
        if item in _SCALARS:
            return f"a list of {_SCALARS[item][1]}"
        if get_origin(item) is Literal:
            return f"a list of: {', '.join(map(str, get_args(item)))}"
        return "a list"
    if _is_union(tp):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    return getattr(tp, "__name__", str(tp))


def _is_union(tp: Any) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


def _optional(tp: Any) -> bool:
    return _is_union(tp) and type(None) in get_args(tp)


def _join(section: str, key: str) -> str:
    return f"{section}.{key}" if section else key


def _message(err: ConfigError) -> str:
    return str(err).removeprefix(f"{err.key}: ")


def _under(err: ConfigError, section: str, fields: Mapping[str, Any]) -> ConfigError:
    """A `__post_init__` error names its field by the class's usual prefix (`metrics.eps`) or
    bare (`every`); built under another section (`callbacks.probe.metrics`), name it there."""
    if not section or err.key == section or err.key.startswith(section + "."):
        return err
    field = err.key.rsplit(".", 1)[-1]
    if field not in fields:
        return err
    return ConfigError(_join(section, field), _message(err))


def plain(obj: Any) -> Any:
    """An OmegaConf node as plain containers (resolved), so Hydra and dict callers look alike."""
    if type(obj).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(obj, resolve=True)
    return obj


# --- Hydra's own composition errors, as one line with suggestions -----------------------------


def run_hydra(hydra_main: Any, config_name: str, tool: str) -> None:
    """Call an entry point's `@hydra.main` function (sinklab-train, sinklab-analyze): a
    mistyped group option or key exits 2 with one line and the nearest valid names, an output
    folder Hydra itself cannot create (read-only, under a file, full) exits 4, instead of a
    traceback or Hydra's listing.

    Hydra prints and swallows exceptions unless HYDRA_FULL_ERROR=1, so we set it for the call
    and report the failures we understand; a user who set it keeps the full traceback.
    """
    user_wants_traceback = os.environ.get("HYDRA_FULL_ERROR") == "1"
    previous = os.environ.get("HYDRA_FULL_ERROR")
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        hydra_main()
    except Exception as err:
        if user_wants_traceback:
            raise
        line = hydra_error_line(err, config_name, tool)  # before OSError: Hydra's
        if line is None and isinstance(err, OSError):  # missing-option error is one too
            line, code = describe_os_error(err), EXIT_OUTPUT
        elif line is not None:
            code = EXIT_CONFIG
        else:
            raise
        print(f"error: {line}", file=sys.stderr)
        sys.exit(code)
    finally:
        if previous is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = previous


_OVERRIDE_ERROR = re.compile(
    r"Could not (?:override|delete from config|append to config)[^']*'(?P<key>[^']+)'"
)


def hydra_error_line(err: BaseException, config_name: str, tool: str) -> str | None:
    """One line for a Hydra composition error of `tool` (sinklab-train, sinklab-analyze): a
    mistyped group option or key gets the nearest valid names and where every option is
    listed, instead of Hydra's options-and-search-path listing (about 25 lines) or its
    '+key' hint, which leads to a second error since sinklab refuses unknown keys.
    None when `err` is not a Hydra error."""
    if not type(err).__module__.startswith(("hydra", "omegaconf")):
        return None
    from hydra.errors import MissingConfigException

    if (
        isinstance(err, MissingConfigException)
        and err.missing_cfg_file
        and "/" in err.missing_cfg_file
    ):
        group, _, option = err.missing_cfg_file.rpartition("/")
        options = list(err.options or group_options(group))
        return (
            f"{group}: no option {option!r};{did_you_mean(option, options)} "
            f"every option is a file in {Path(CONF_DIR) / group}/ (or run {tool} --help)"
        )
    match = _OVERRIDE_ERROR.search(str(err))
    if match is not None:
        key = match["key"]
        return (
            f"{key}: unknown key;{did_you_mean(key, config_keys(config_name))} "
            f"every key is listed by {tool} --cfg job (and in docs/configuration.md)"
        )
    return " ".join(str(err).split())


def group_options(group: str) -> list[str]:
    """The options of a conf/ group: its YAML files, by name."""
    return sorted(p.stem for p in (Path(CONF_DIR) / group).glob("*.yaml"))


def config_keys(config_name: str) -> list[str]:
    """Every key of a root config as composed by default (dotted, sections included) and, for
    the training config, its groups (`variant`, `experiment`): what a mistyped key could mean."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    GlobalHydra.instance().clear()  # the failed @hydra.main left its instance set
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name)
    keys = list(_dotted(OmegaConf.to_container(cfg, resolve=False)))
    if config_name == "train":
        keys += [p.name for p in Path(CONF_DIR).iterdir() if p.is_dir() and p.name != "hydra"]
    return sorted(set(keys))


def _dotted(tree: Any, prefix: str = "") -> list[str]:
    if not isinstance(tree, Mapping):
        return []
    out = []
    for key, value in tree.items():
        name = f"{prefix}{key}"
        out.append(name)
        out += _dotted(value, name + ".")
    return out
