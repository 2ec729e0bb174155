"""Every config file under conf/ composes and passes validation (groups of train.yaml, the
analyze app, and the Hydra launchers)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from sinklab.training.run import validate_config
from tests.training.conftest import CONF_DIR, compose_train

GROUPS = [
    "model",
    "data",
    "optim",
    "trainer",
    "logger",
    "callbacks",
    "experiment",
    "variant",
    "scale",
    "paths",
    "debug",
]
# data/base.yaml and model/base.yaml are valid choices too: the defaults the other files extend.
CASES = [
    (group, path.stem) for group in GROUPS for path in sorted((CONF_DIR / group).glob("*.yaml"))
]
LAUNCHERS = sorted(p.stem for p in (CONF_DIR / "hydra" / "launcher").glob("*.yaml"))


def test_every_group_file_is_covered() -> None:
    on_disk = {p.parent.name for p in CONF_DIR.glob("*/*.yaml")}
    assert on_disk <= set(GROUPS) | {"hydra"}, (
        f"a new config group needs a case here: {on_disk - set(GROUPS)}"
    )


@pytest.mark.parametrize("group,option", CASES, ids=[f"{g}={o}" for g, o in CASES])
def test_group_option_composes_and_validates(tmp_path: Path, group: str, option: str) -> None:
    extra = []
    if (group, option) in {("data", "text_files"), ("experiment", "text")}:  # need the user's files
        (tmp_path / "a.txt").write_text("some text")
        extra = [f"data.text_files.paths=[{tmp_path / 'a.txt'}]"]
    cfg = compose_train(
        [f"{group}={option}", f"paths.output_dir={tmp_path}", f"paths.cache_dir={tmp_path}", *extra]
    )
    run = validate_config(cfg)
    assert run.trainer.max_steps > 0 and run.data.seq_len > 0


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_launchers_compose(launcher: str, tmp_path: Path) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train",
            overrides=[f"hydra/launcher={launcher}", f"paths.output_dir={tmp_path}"],
            return_hydra_config=True,
        )
    assert "_target_" in cfg.hydra.launcher


def test_analyze_config_composes() -> None:
    from sinklab.reanalysis.config import from_mapping

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="analyze", overrides=["target=smollm2"])
    assert from_mapping(cfg).target == "smollm2"
