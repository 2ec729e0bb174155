"""An installed wheel carries the Hydra config tree (issue 28): built from the project's files,
installed into a fresh venv with no source tree in sight, `sinklab-train` composes and runs
from an empty folder.

Offline and quick: the wheel is built without build isolation when the running venv has a
setuptools that pyproject.toml accepts (else pip fetches one, as `make install` does), and the
fresh venv borrows its dependencies from the running one through a `.pth` line, so nothing
heavy is installed. A `.pth` line adds a folder to sys.path without running the `.pth` files
inside it, so the checkout's editable install (a `.pth` there) stays out of sight.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from sinklab.configs import conf_dir

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "src", "conf")


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _isolation_flags() -> list[str]:
    """--no-build-isolation when this venv's setuptools meets pyproject's floor (offline)."""
    try:
        major = int(importlib.metadata.version("setuptools").split(".")[0])
    except importlib.metadata.PackageNotFoundError:
        return []
    return ["--no-build-isolation"] if major >= 77 else []


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the sinklab wheel alone (dependencies borrowed, see above)."""
    tmp = tmp_path_factory.mktemp("wheel")
    tree = tmp / "tree"  # a copy, so the build writes nothing (build/, egg-info) in the checkout
    tree.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    for name in BUILD_INPUTS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=skip)
        else:
            shutil.copy2(src, tree / name)
    dist = tmp / "dist"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "-q", "--no-deps", *_isolation_flags(), "-w", str(dist), "."], tree)
    (wheel,) = dist.glob("sinklab-*.whl")
    env = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(env)], tmp)
    python = env / "bin" / "python"
    purelib = _run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp
    )
    here = sysconfig.get_paths()
    deps = dict.fromkeys([here["purelib"], here["platlib"]])  # this venv's packages, in order
    (Path(purelib.strip()) / "_sinklab_deps.pth").write_text("\n".join(deps) + "\n")
    _run([*pip, "--python", str(python), "install", "-q", "--no-deps", str(wheel)], tmp)
    return env


def _clean_env(tmp: Path) -> dict[str, str]:
    """No PYTHONPATH (the checkout must not be importable), outputs and caches under `tmp`."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SINKLAB_OUTPUTS")}
    return {**env, "SINKLAB_CACHE": str(tmp / "cache"), "OMP_NUM_THREADS": "1"}


def _cli(venv: Path, script: str, args: list[str], cwd: Path) -> str:
    return _run([str(venv / "bin" / script), *args], cwd, _clean_env(cwd))


def test_the_installed_package_is_the_wheel_with_its_own_configs(
    venv: Path, tmp_path: Path
) -> None:
    code = "import sinklab, sinklab.configs as c; print(sinklab.__file__); print(c.conf_dir())"
    out = _run([str(venv / "bin" / "python"), "-c", code], tmp_path, _clean_env(tmp_path))
    module, conf = (Path(line) for line in out.split())
    assert module.is_relative_to(venv) and conf == module.parent / "conf"
    assert not module.is_relative_to(ROOT)
    shipped = {p.relative_to(conf) for p in conf.rglob("*.yaml")}
    assert shipped == {p.relative_to(conf_dir()) for p in conf_dir().rglob("*.yaml")}


@pytest.mark.parametrize(
    "script,args,name",
    [
        ("sinklab-train", [], "train"),
        ("sinklab-train", ["debug=tiny"], "train"),
        ("sinklab-train", ["experiment=pos_sweep", "model.pos=alibi"], "train"),
        ("sinklab-analyze", ["target=smollm2"], "analyze"),
    ],
    ids=["default", "debug=tiny", "experiment=pos_sweep", "analyze"],
)
def test_cfg_job_composes_from_an_empty_folder(
    venv: Path, tmp_path: Path, script: str, args: list[str], name: str
) -> None:
    """Hydra's print-config from the wheel equals the checkout's conf/ composed here."""
    printed = yaml.safe_load(_cli(venv, script, [*args, "--cfg", "job"], tmp_path))
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        expected = OmegaConf.to_container(compose(config_name=name, overrides=args))
    assert printed == expected
    if args == ["debug=tiny"]:
        assert printed["model"]["d_model"] == 32 and printed["data"]["source"] == "synthetic"


def test_debug_tiny_runs_from_the_wheel(venv: Path, tmp_path: Path) -> None:
    out = _cli(venv, "sinklab-train", ["debug=tiny", "trainer.threads=1"], tmp_path)
    assert "sinklab run finished" in out
    (run,) = (tmp_path / "outputs" / "runs").iterdir()
    assert (run / "metrics" / "probes.parquet").is_file()
    assert (run / "checkpoints" / "last.ckpt").is_file()
