"""Build hook, and nothing else (the project's metadata is in pyproject.toml).

A wheel must carry the Hydra config tree: an installed `sinklab-train` has no repository beside
it. The tree stays at the top-level conf/ (our layout), and this hook copies it into the wheel
as `sinklab/conf`, where `sinklab.configs.conf_dir()` finds it. An editable install copies
nothing: it reads conf/ in place, so edits there are live.
"""

from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"


class BuildPyWithConf(build_py):
    """build_py, plus conf/**/*.yaml copied to <build_lib>/sinklab/conf."""

    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        for src in sorted(CONF.rglob("*.yaml")):
            dst = Path(self.build_lib) / "sinklab" / "conf" / src.relative_to(CONF)
            self.mkpath(str(dst.parent))
            self.copy_file(str(src), str(dst))


setup(cmdclass={"build_py": BuildPyWithConf})
