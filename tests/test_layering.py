"""The layer order of `sinklab`, stated once (`LAYERS`) and enforced on every import.

Every `import` in src/sinklab is read with `ast`, those inside functions and under
`if TYPE_CHECKING:` included: a module may import its own package, the foundation, and
packages of lower layers, never one above or beside it. And no modules import each other
in a cycle, however long. A second test keeps Lightning inside `sinklab.training`. Both
checks are shown to fail on planted packages, so a pass means something.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from collections.abc import Iterator, Sequence
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A module may import modules of its own package and of lower layers; the
# foundation (first layer) may be imported by all, and its modules import each other.
# `runs` (run-folder layout, checkpoints, the log-spaced schedule) sits below `data`, which
# finds the run's saved files through it, and below `analysis`, whose evaluations are
# scheduled with it. The entry modules are on top: the CLIs (`sinklab.train`,
# `sinklab.analyze`) and the generated configuration reference (`sinklab.docs_gen`), which
# reads every layer's config classes.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("sinklab", "errors", "atomic", "configs"),
    ("model",),
    ("runs",),
    ("data",),
    ("analysis",),
    ("reanalysis",),
    ("reports",),
    ("training",),
    ("bench",),
    ("train", "analyze", "docs_gen"),
)


def module_files(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py under `root / package`."""
    out = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imports_of(name: str, path: Path, modules: dict[str, Path], package: str) -> Iterator[str]:
    """The package's modules that `name` imports, anywhere in the file (functions and
    TYPE_CHECKING blocks included); `from pkg import mod` counts as importing `pkg.mod`."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                here = name.split(".") if is_pkg else name.split(".")[:-1]
                up = here[: len(here) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            if target == package or target.startswith(package + "."):
                while target not in modules and "." in target:  # `import a.b.func`-like names
                    target = target.rsplit(".", 1)[0]
                yield target


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of `package` it imports (itself left out)."""
    modules = module_files(root, package)
    return {
        name: {t for t in imports_of(name, path, modules, package) if t != name}
        for name, path in modules.items()
    }


def unit_of(module: str, package: str) -> str:
    """The layer unit of a module: its first name under the package (`sinklab.model.x` ->
    `model`), or the package itself for its `__init__`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else package


def layer_violations(
    graph: dict[str, set[str]], package: str, layers: Sequence[Sequence[str]]
) -> list[str]:
    """`a -> b` for every import against `layers`; a unit missing from them is a violation."""
    rank = {unit: i for i, units in enumerate(layers) for unit in units}
    bad = []
    for module, targets in sorted(graph.items()):
        mine = unit_of(module, package)
        for target in sorted(targets):
            theirs = unit_of(target, package)
            if mine == theirs:
                continue
            if mine not in rank or theirs not in rank:
                bad.append(f"{module} -> {target} (a unit outside LAYERS)")
            elif rank[theirs] > rank[mine] or (rank[theirs] == rank[mine] and rank[mine] > 0):
                bad.append(f"{module} -> {target} ({mine} may not import {theirs})")
    return bad


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_every_import_follows_the_layer_order() -> None:
    graph = import_graph(SRC, "sinklab")
    assert len(graph) > 50 and any(graph.values())  # the walk found the package
    assert layer_violations(graph, "sinklab", LAYERS) == []


def test_no_module_import_cycle() -> None:
    assert cycles(import_graph(SRC, "sinklab")) == []


def _fake_package(root: Path, files: dict[str, str]) -> None:
    for name, body in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(body))


FAKE_LAYERS = (("fake", "errors"), ("model",), ("analysis",))


def test_the_checker_finds_a_back_import_inside_a_function(tmp_path: Path) -> None:
    _fake_package(
        tmp_path,
        {
            "fake/__init__.py": "",
            "fake/errors.py": "",
            "fake/model/__init__.py": "from fake.model import core\n",
            "fake/model/core.py": """
                from fake import errors

                def late():
                    from fake.analysis import stats  # against the order
                    return stats
            """,
            "fake/analysis/__init__.py": "",
            "fake/analysis/stats.py": "from ..model.core import late\nfrom fake.errors import *\n",
        },
    )
    graph = import_graph(tmp_path, "fake")
    assert graph["fake.analysis.stats"] == {"fake.model.core", "fake.errors"}  # relative, too
    assert layer_violations(graph, "fake", FAKE_LAYERS) == [
        "fake.model.core -> fake.analysis.stats (model may not import analysis)"
    ]
    # a unit nobody placed is refused too
    _fake_package(tmp_path, {"fake/extra.py": "import fake.model.core\n"})
    bad = layer_violations(import_graph(tmp_path, "fake"), "fake", FAKE_LAYERS)
    assert "fake.extra -> fake.model.core (a unit outside LAYERS)" in bad


def test_the_checker_finds_a_cycle_behind_type_checking(tmp_path: Path) -> None:
    _fake_package(
        tmp_path,
        {
            "fake/__init__.py": "",
            "fake/model/__init__.py": "",
            "fake/model/a.py": "from fake.model.b import B\n",
            "fake/model/b.py": """
                from typing import TYPE_CHECKING

                if TYPE_CHECKING:
                    from fake.model.c import C
            """,
            "fake/model/c.py": "import fake.model.a\n",
            "fake/model/d.py": "from fake.model import a\n",  # imports the cycle, not in it
        },
    )
    graph = import_graph(tmp_path, "fake")
    assert cycles(graph) == [["fake.model.a", "fake.model.b", "fake.model.c"]]
    assert layer_violations(graph, "fake", FAKE_LAYERS) == []  # within a package: allowed


LIGHTNING_FREE = (
    "sinklab.analysis",
    "sinklab.analysis.pipeline",
    "sinklab.analysis.probe_pass",
    "sinklab.model",
    "sinklab.data",
    "sinklab.runs",
    "sinklab.runs.layout",
    "sinklab.runs.checkpoints",
    "sinklab.reanalysis.runner",
    "sinklab.reports.figures",
    "sinklab.reports.studies",
    "sinklab.reports.pretrained",
)


def test_lightning_free_modules_import_without_lightning_and_training_does() -> None:
    """Lightning stays inside `sinklab.training`: the metric path (also used for pretrained
    models), the model, the data pipeline, run folders and reports import without it. One
    interpreter imports them in turn and names the first one that pulls Lightning in; then
    it imports the training run, which must pull Lightning in: the check can fail."""
    code = (
        "import importlib, sys\n"
        f"for m in {list(LIGHTNING_FREE)!r}:\n"
        "    importlib.import_module(m)\n"
        "    assert 'lightning' not in sys.modules, f'{m} imported lightning'\n"
        "import sinklab.training.run\n"
        "assert 'lightning' in sys.modules, 'sinklab.training.run did not import lightning'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
