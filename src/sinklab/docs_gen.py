"""Generated documentation: the configuration reference and the metric-name table.

Both tables are read from the code, never typed by hand, so a key or metric added anywhere
shows up in the docs at the next `make docs`, and `tests/test_docs.py` fails until it does.
The configuration reference joins three sources, each the authority for one thing:

- the composed Hydra tree (`conf/`): every key and its default, interpolations left as
  written (`${seed}`), so no machine's paths leak into the page;
- the config dataclasses: the type of each key, and the allowed values of a `Literal`;
- comments: a key's trailing comment (or the comment block right above it) in its group's
  base file, else the dataclass field's comment. A group file's header comment describes it.

An entry module, on top of the layer order with `train` and `analyze`: it reads every section's
config class. `python -m sinklab.docs_gen` rewrites the generated blocks in docs/ in place.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import types
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from sinklab.atomic import atomic_write
from sinklab.configs import CONF_DIR

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs"
CONFIG_DOC = "configuration.md"
METRICS_DOC = "metrics.md"


def _sections() -> list[tuple[str, type | None, str | None]]:
    """(section, its config class or None, the conf file whose comments describe it), in the
    order the reference lists them. Imported here, not at module level: the classes pull in
    every layer, and a caller that only wants the markers should not pay for them."""
    from sinklab.data.config import DataConfig
    from sinklab.model.config import ModelConfig
    from sinklab.training.config import CallbacksConfig, LoggerConfig, OptimConfig, TrainerConfig

    return [
        ("model", ModelConfig, "model/base.yaml"),
        ("data", DataConfig, "data/base.yaml"),
        ("optim", OptimConfig, "optim/adamw.yaml"),
        ("trainer", TrainerConfig, "trainer/cpu.yaml"),
        ("logger", LoggerConfig, "logger/wandb.yaml"),
        ("callbacks", CallbacksConfig, "callbacks/default.yaml"),
        ("paths", None, "paths/default.yaml"),
    ]


@dataclass(frozen=True)
class Row:
    """One key of the reference."""

    key: str
    values: str  # the type in words, or the allowed values
    default: str
    recipe: str  # the value under `make train`'s recipe when it differs, else ""
    meaning: str


# ---------------------------------------------------------------- comments


def yaml_comments(path: Path) -> dict[str, str]:
    """Dotted key -> its comment in one YAML file: the comment block right above the key (not
    the file's header) and the trailing comment on its line, joined."""
    out: dict[str, str] = {}
    stack: list[tuple[int, str]] = []  # (indent, key) of the open mappings
    pending: list[str] = []
    seen_content = False
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            if seen_content:
                pending.append(stripped.lstrip("#").strip())
            continue
        seen_content = True
        match = re.match(r"^(\s*)([A-Za-z_][\w]*):(.*)$", line)
        if match is None:  # a list item or a continuation
            pending = []
            continue
        indent, key, rest = len(match.group(1)), match.group(2), match.group(3)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        dotted = ".".join([k for _, k in stack] + [key])
        trailing = _trailing_comment(rest)
        text = "; ".join(t for t in (" ".join(pending), trailing) if t)
        if text:
            out[dotted] = text
        pending = []
        stack.append((indent, key))
    return out


def _trailing_comment(rest: str) -> str:
    """The comment after a YAML value: a `#` preceded by whitespace, outside quotes."""
    quote = None
    for i, ch in enumerate(rest):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or rest[i - 1].isspace()):
            return rest[i + 1 :].strip()
    return ""


def header_comment(path: Path) -> str:
    """A conf file's header comment (the lines before its first entry), without Hydra's
    `@package` directive, as one line of text."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        text = line.lstrip("#").strip()
        if not text.startswith("@package"):
            lines.append(text)
    return " ".join(lines).strip()


_ABBREVIATIONS = ("al", "e.g", "i.e", "cf", "vs", "etc")


def first_sentence(text: str) -> str:
    """The text up to its first full stop or question mark that ends a sentence ("et al."
    and "e.g." do not)."""
    for match in re.finditer(r"[.?](\s+|$)", text):
        before = text[: match.start()]
        word = before.rsplit(None, 1)[-1] if before.split() else ""
        if word.lower().rstrip(".") in _ABBREVIATIONS or re.fullmatch(r"[\d.]+", word):
            continue
        return text[: match.start() + 1]
    return text


# Comments for tools, not readers (type checkers' ignores, linters' noqa, coverage pragmas).
_PRAGMA = re.compile(r"type:\s*ignore(\[[^\]]*\])?|noqa\b.*|pragma:.*")


@functools.cache
def field_comments(cls: type) -> dict[str, str]:
    """Field name -> the comment on (or right above) its line in the class's source, for the
    class and its dataclass bases."""
    out: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        pending: list[str] = []
        for line in inspect.getsource(klass).splitlines()[1:]:
            stripped = line.strip()
            if stripped.startswith("#") and line.startswith("    ") and line[4] != " ":
                pending.append(stripped.lstrip("#").strip())
                continue
            match = re.match(r"^    (\w+):[^#]*?(?:#\s*(.*))?$", line)
            if match and not stripped.startswith(("def ", "@", "return")):
                parts = [p.strip() for p in (match.group(2) or "").split("#")]
                comment = " ".join(p for p in parts if p and not _PRAGMA.fullmatch(p))
                text = " ".join([*pending, comment]).strip()
                if text:
                    out[match.group(1)] = text
            pending = []
    return out


def docstring_meanings(cls: type) -> dict[str, str]:
    """Field name -> what the class docstring says of it: the phrase right after "`name`",
    up to the next `;` or sentence end, else the whole (short) clause that names it. The
    fallback for classes that describe their fields there rather than beside them."""
    doc = " ".join((inspect.getdoc(cls) or "").split())
    clauses = re.split(r"(?<=;)\s+|(?<=\.)\s+(?=[A-Z`])", doc)
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        match = re.search(rf"`{f.name}` ([a-z][^;`]*?)(?:;|\.\s+[A-Z]|\.$|,\s`|$)", doc)
        text = match.group(1).strip().removeprefix("is ").rstrip(",") if match else ""
        if len(text.split()) >= 3 and not text.startswith("x "):  # not a formula's tail
            out[f.name] = text
            continue
        clause = next((c for c in clauses if f"`{f.name}`" in c), "")
        clause = clause.replace("`", "").rstrip(";").strip()
        if 3 <= len(clause.split()) and len(clause) <= 160:
            out[f.name] = clause
    return out


# ---------------------------------------------------------------- types and values


def describe_type(tp: Any) -> str:
    """A field's type in the words a user types on the command line."""
    if tp is Any:
        return "any"
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return " \\| ".join(_plain(a) for a in args)
    if origin in (Union, types.UnionType):
        members = [a for a in args if a is not type(None)]
        text = " or ".join(describe_type(a) for a in members)
        return f"{text} or null" if len(members) < len(args) else text
    if tp in (int, float, bool, str):
        return tp.__name__
    if tp in (dict,) or origin is dict:
        return "mapping"
    if tp in (list, tuple) or origin in (list, tuple):
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return f"list of {len(args)} {describe_type(args[0])}"
        return f"list of {describe_type(args[0])}" if args else "list"
    return getattr(tp, "__name__", str(tp))


def _plain(value: Any) -> str:
    """A value as YAML writes it on a command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_plain(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_plain(v)}" for k, v in value.items()) + "}"
    return str(value)


def _cell(value: Any) -> str:
    text = _plain(value).replace("|", "\\|")
    return f"`{text}`" if text else "`''`"


def _field_default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


# ---------------------------------------------------------------- rows


def section_rows(
    prefix: str,
    cls: type | None,
    defaults: Any,
    recipe: Any,
    comments: dict[str, str],
    key: str = "",
) -> Iterator[Row]:
    """Rows for every leaf key under `prefix`: the dataclass's fields in their order, then
    keys the YAML holds that the class does not name (free-form mappings). `key` is the path
    inside the section, for the comment lookup."""
    defaults = defaults if isinstance(defaults, dict) else {}
    recipe = recipe if isinstance(recipe, dict) else {}
    hints = get_type_hints(cls) if cls is not None else {}
    fields = {f.name: f for f in dataclasses.fields(cls)} if cls is not None else {}
    own = field_comments(cls) if cls is not None else {}
    doc = docstring_meanings(cls) if cls is not None else {}
    names = [n for n, f in fields.items() if f.init] + [n for n in defaults if n not in fields]
    for name in names:
        path, inner = f"{prefix}.{name}", f"{key}.{name}".lstrip(".")
        tp = hints.get(name)
        in_yaml = name in defaults
        value = defaults[name] if in_yaml else _field_default(fields[name])
        nested_yaml = isinstance(value, dict) and value and not _is_section(tp)
        if _is_section(tp) or nested_yaml:
            sub = tp if _is_section(tp) else None
            yield from section_rows(path, sub, value, recipe.get(name), comments, inner)
            continue
        meaning = comments.get(inner) or own.get(name) or doc.get(name, "")
        values = describe_type(tp) if tp is not None else _guess_type(value)
        meaning = _without_choices(meaning, values)
        shown = _cell(value)
        theirs = _cell(recipe[name]) if name in recipe else shown
        yield Row(path, values, shown, theirs if theirs != shown else "", meaning)


def _without_choices(comment: str, values: str) -> str:
    """A comment without its leading list of the allowed values, which the values column
    already gives (`swiglu | geglu | none (attention-only)` -> `(attention-only)`)."""
    choices = [c.strip() for c in values.split("\\|")]
    if len(choices) < 2:
        return comment
    pattern = r"\s*\|\s*".join(re.escape(c) for c in choices)
    match = re.match(rf"{pattern}(?![\w-])", comment)
    if match is None:
        return comment
    rest = comment[match.end() :].lstrip(" ;:,")
    return rest[1:-1] if rest.startswith("(") and rest.endswith(")") else rest


def _guess_type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, list):
        return "list"
    if isinstance(value, (int, float, str)):
        return type(value).__name__
    return "any"


def _table(rows: list[Row], recipe_column: bool) -> str:
    head = (
        "| key | values | default |" + (" `make train` |" if recipe_column else "") + " meaning |"
    )
    rule = "|---|---|---|" + ("---|" if recipe_column else "") + "---|"
    lines = [head, rule]
    for r in rows:
        extra = f" {r.recipe} |" if recipe_column else ""
        meaning = r.meaning.replace("|", "\\|")
        lines.append(f"| `{r.key}` | {r.values} | {r.default} |{extra} {meaning} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- composition


def _compose(config_name: str, overrides: list[str]) -> dict[str, Any]:
    """The composed tree, interpolations unresolved (`${seed}` stays `${seed}`)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=config_name, overrides=overrides)
    tree = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(tree, dict)
    return tree


def _group_defaults() -> dict[str, str | None]:
    """Group -> its default option, from conf/train.yaml's defaults list."""
    raw = yaml.safe_load((Path(CONF_DIR) / "train.yaml").read_text())
    out: dict[str, str | None] = {}
    for entry in raw.get("defaults", []):
        if isinstance(entry, dict):
            out.update({str(k): v for k, v in entry.items()})
    return out


def groups_markdown() -> str:
    """Every config group under conf/ with its options, each described by its file's header
    comment (first sentence); the default option in bold."""
    conf = Path(CONF_DIR)
    defaults = _group_defaults()
    lines = ["| group | option | what it is |", "|---|---|---|"]
    folders = sorted({p.parent for p in conf.rglob("*.yaml")} - {conf})
    for folder in folders:
        group = folder.relative_to(conf).as_posix()
        for path in sorted(folder.glob("*.yaml")):
            option = path.stem
            name = f"**`{option}`** (default)" if defaults.get(group) == option else f"`{option}`"
            text = first_sentence(header_comment(path)).replace("|", "\\|")
            lines.append(f"| `{group}` | {name} | {text} |")
    return "\n".join(lines)


# The top-level keys' types, as `validate_config` coerces them (they have no dataclass).
TOP_LEVEL_TYPES = {
    "seed": "int",
    "experiment_name": "str",
    "run_name": "str or null",
    "ckpt_path": "str or null",
    "tags": "list",
    "notes": "any",
}


def train_rows() -> dict[str, list[Row]]:
    """Every key `sinklab-train` accepts, by section: "" for the top-level scalars, then each
    section (a top-level mapping no config class is known for is listed from its YAML)."""
    groups_only = _compose("train", ["~experiment", "~scale"])
    recipe = _compose("train", [])
    conf = Path(CONF_DIR)
    top = yaml_comments(conf / "train.yaml")
    known = {name: (cls, file) for name, cls, file in _sections()}
    out: dict[str, list[Row]] = {"": []}
    for key, value in groups_only.items():
        if key in known or isinstance(value, dict):
            continue
        theirs = recipe.get(key)
        shown = TOP_LEVEL_TYPES.get(key) or _guess_type(value)
        out[""].append(
            Row(
                key, shown, _cell(value), _cell(theirs) if theirs != value else "", top.get(key, "")
            )
        )
    extra = [k for k, v in groups_only.items() if isinstance(v, dict) and k not in known]
    for name in [*known, *extra]:
        cls, comment_file = known.get(name, (None, None))
        comments = yaml_comments(conf / comment_file) if comment_file else {}
        rows = section_rows(name, cls, groups_only.get(name), recipe.get(name), comments)
        out[name] = list(rows)
    return out


def analyze_rows() -> list[Row]:
    """Every key `sinklab-analyze` accepts (conf/analyze.yaml and AnalyzeConfig)."""
    from sinklab.reanalysis.config import AnalyzeConfig

    tree = _compose("analyze", [])
    comments = yaml_comments(Path(CONF_DIR) / "analyze.yaml")
    comments |= {
        f"paths.{k}": v for k, v in yaml_comments(Path(CONF_DIR) / "paths/default.yaml").items()
    }
    return list(section_rows("", AnalyzeConfig, tree, tree, comments))


def config_markdown() -> str:
    """The generated part of docs/configuration.md."""
    train = train_rows()
    parts = [
        "### Groups (`conf/<group>/<option>.yaml`)",
        "",
        "Pick one option per group on the command line (`model=gu60m trainer=gpu`); the "
        "default recipe's choice is in bold.",
        "",
        groups_markdown(),
        "",
        "### `sinklab-train` keys (`conf/train.yaml` and its groups)",
        "",
        "`default` is the value with every group at its default option and no experiment; "
        "`make train` shows the value under the default recipe (`experiment=quickstart`) "
        "where it differs.",
    ]
    for section, rows in train.items():
        if rows:
            title = f"`{section}`" if section else "top level"
            parts += ["", f"#### {title}", "", _table(rows, recipe_column=True)]
    analyze = [Row(r.key.lstrip("."), r.values, r.default, "", r.meaning) for r in analyze_rows()]
    parts += [
        "",
        "### `sinklab-analyze` keys (`conf/analyze.yaml`)",
        "",
        _table(analyze, recipe_column=False),
    ]
    return "\n".join(parts)


def metrics_table() -> str:
    """The metric registry as a table, the generated part of docs/metrics.md."""
    from sinklab.analysis import metrics_markdown

    return metrics_markdown()


# ---------------------------------------------------------------- blocks in files

GENERATED = {CONFIG_DOC: ("config", config_markdown), METRICS_DOC: ("metrics", metrics_table)}


def markers(name: str) -> tuple[str, str]:
    return f"<!-- generated:{name} -->", f"<!-- /generated:{name} -->"


def block(text: str, name: str) -> str:
    """The text between a page's markers for `name`; ValueError when they are missing."""
    start, end = markers(name)
    if start not in text or end not in text:
        raise ValueError(f"missing {start} ... {end}")
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n")


def replace_block(text: str, name: str, generated: str) -> str:
    """`text` with the block for `name` replaced by `generated`."""
    start, end = markers(name)
    before = text.split(start, 1)[0]
    after = text.split(end, 1)[1]
    return f"{before}{start}\n{generated}\n{end}{after}"


def write_docs(docs_dir: Path = DOCS_DIR) -> list[Path]:
    """Rewrite every generated block under `docs_dir`; returns the files that changed."""
    changed = []
    for page, (name, render) in GENERATED.items():
        path = docs_dir / page
        text = path.read_text()
        new = replace_block(text, name, render())
        if new != text:
            data = new.encode()
            atomic_write(path, lambda fh, data=data: fh.write(data))
            changed.append(path)
    return changed


if __name__ == "__main__":
    for path in write_docs():
        print(f"rewrote {path}")
