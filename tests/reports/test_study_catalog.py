"""A study is one declaration (reports/study_catalog.py): the Makefile, `make reproduce`, the
post-step runner and the report all read it, and jobs carry their keys from their saved
overrides and config, never from parsed labels."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from sinklab.configs import CONF_DIR
from sinklab.reports import frames_study, reproduce, run_study, studies, study_catalog
from sinklab.reports.study_catalog import STUDIES, PostStep, Study, View

ROOT = Path(__file__).resolve().parents[2]


def _spec(view: View) -> dict:
    """What a report view's tables, figures and verdicts are made of, in the snapshot's form
    (tests/reports/study_views.json, taken from the report code before the catalogue)."""

    def slug(metric: str) -> str:
        return re.sub(r"[^a-z0-9]+", "_", metric.lower()).strip("_")

    spec: dict = {
        "columns": [list(c) for c in studies.FINAL_COLUMNS + view.columns],
        "figures": [
            f"{view.name}_{slug(m)}" + ("" if w == "model" else f"@{w}")
            for m, w in studies.FIGURE_METRICS + view.figures
        ],
    }
    if view.tables:
        spec["tables"] = [[t.title, [list(c) for c in t.columns]] for t in view.tables]
    if view.panels is not None:
        p = view.panels
        spec["panels"] = [p.stem, p.title, [list(x) for x in p.panels]]
    if view.frames:
        spec["frames"] = True
    if view.siblings:
        spec["siblings"] = [[s.folder, s.prefix, s.renamed] for s in view.siblings]
    if view.directions:
        spec["directions"] = [[d.setting, d.baseline, d.statistic, d.sign] for d in view.directions]
    return spec


def test_the_declarations_drive_the_same_sections_columns_figures_and_verdicts_as_before() -> None:
    before = json.loads((Path(__file__).with_name("study_views.json")).read_text())
    found = study_catalog.views()
    assert set(found) == set(before["sections"])
    for name, (_study, view) in found.items():
        assert _spec(view) == before["sections"][name], name
    for study in STUDIES.values():
        expected = before["report_views"].get(study.name, [study.name])
        assert [v.name for v in study.views] == expected


def test_view_names_are_unique_and_siblings_are_post_step_folders() -> None:
    """Two views of one name would write one results.md section twice; a sibling folder that
    no post-step writes would be read empty."""
    names = [v.name for s in STUDIES.values() for v in s.views]
    assert len(names) == len(set(names))
    for study in STUDIES.values():
        for view in study.views:
            for sibling in view.siblings:
                assert study.post_step is not None and sibling.folder == study.post_step.out


def test_every_sweep_experiment_is_a_study_and_every_study_has_an_experiment() -> None:
    """Every `*_sweep` experiment (each one `make reproduce` runs) has a declaration, and every
    declared study names an experiment file (tests/training/test_compose_all.py composes each)."""
    sweeps = {p.stem for p in (Path(CONF_DIR) / "experiment").glob("*_sweep.yaml")}
    assert sweeps <= set(STUDIES), sorted(sweeps - set(STUDIES))
    for study in STUDIES.values():
        assert study.experiment_file().is_file(), study.name


def test_every_results_section_is_a_declared_view_and_every_view_has_a_section() -> None:
    text = (ROOT / "docs" / "results.md").read_text()
    sections = re.findall(r"<!-- study:(\w+) -->", text)
    assert len(sections) == len(set(sections))
    assert set(sections) == set(study_catalog.views())


def test_every_direction_compares_two_settings_its_sweep_runs() -> None:
    """A direction whose labels no job has is silently left out of the report: each setting and
    baseline must be a label of the sweep (as the report writes labels), on a known statistic."""
    from tests.reports.fake_studies import _grid, sweep_params

    for study in STUDIES.values():
        wanted = [d for v in study.views for d in v.directions]
        if not wanted:
            continue
        params = sweep_params(study.experiment)
        params.pop("seed", None)
        labels = {studies.setting_label(point) for point in _grid(params)}
        for d in wanted:
            assert d.statistic in studies.STATISTICS, d
            assert {d.setting, d.baseline} <= labels, (study.name, d.setting, d.baseline)


def test_reproduce_runs_exactly_the_catalogues_studies_in_order(
    capsys: pytest.CaptureFixture,
) -> None:
    import importlib.util

    marked = [name for name, s in STUDIES.items() if s.reproduce]
    assert list(reproduce.STUDIES) == marked
    assert reproduce.POST_STEP_S == {
        "attention_sweep": STUDIES["attention_sweep"].post_step.seconds_per_job
    }
    spec = importlib.util.spec_from_file_location(
        "reproduce_script", ROOT / "scripts" / "reproduce.py"
    )
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    module.plan_study = lambda name, _dir: reproduce.StudyPlan(name, 1, 1, 1, 1.0, "fake")
    assert module.main(["--dry-run"]) == 0
    rows = capsys.readouterr().out.splitlines()[1:-1]  # the header and the total aside
    assert [row.split()[0] for row in rows] == marked


def test_make_study_runs_the_catalogue_and_prints_the_python_post_step() -> None:
    """`make -n study-attention_sweep` prints the study's real steps (run_study --dry-run): the
    4-bit prefixed-sink pass is a Python command per job, two at a time, not shell."""
    env = dict(os.environ, PY=sys.executable)
    out = subprocess.run(
        ["make", "-n", "study-attention_sweep"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "-m sinklab.reports.run_study attention_sweep" in out
    assert "xargs" not in out
    post = next(line for line in out.splitlines() if "-m sinklab.analyze" in line)
    assert post.startswith("(cd outputs/studies/attention_sweep && OMP_NUM_THREADS=1 ")
    assert post.endswith(
        "-m sinklab.analyze 'target=\"./<job>\"' steps=last 'groups=[sinks]' quant.enabled=true "
        "quant.quantizer.bits=4 'quant.prefix.prefixes=[bos,prefixquant,cushioncache]' "
        "'out_dir=\"../attention_sweep_w4/<job>\"')"
    )
    assert "2 at a time" in out
    assert "mv outputs/studies/attention_sweep_w4 " in out
    # a report view's name runs the study that feeds it
    assert study_catalog.study("quant_sweep") is STUDIES["attention_sweep"]


def test_a_post_step_passes_a_named_job_folder_to_hydra_whole() -> None:
    """Sweep job folders carry their overrides (`3_seed=1,variant=relu`): the post-step's
    target and out_dir must reach sinklab-analyze as that one folder name, not as a Hydra
    list or a second override (the bug that stopped attention_sweep's post-step)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    job = "3_experiment=attention_sweep,seed=1,variant=relu"
    step = PostStep(out="w4", overrides=("steps=last",))
    parsed = OverridesParser.create().parse_overrides(step.command(job))
    values = {o.key_or_group: o.value() for o in parsed}
    assert values["target"] == f"./{job}"
    assert values["out_dir"] == f"../w4/{job}"


def test_sweep_jobs_are_in_job_order_with_named_folders(tmp_path: Path) -> None:
    for name in ("10_seed=0", "2_seed=1", "1_seed=0", "not_a_job", "0"):
        (tmp_path / name).mkdir()
    assert run_study.sweep_jobs(tmp_path) == ["0", "1_seed=0", "2_seed=1", "10_seed=0"]


def test_an_unknown_study_is_refused_in_one_line(capsys: pytest.CaptureFixture) -> None:
    assert run_study.main(["nope", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "error: study: 'nope' is not allowed; choose one of:"
    )
    assert "attention_sweep" in err[0] and "quant_sweep" in err[0]
    assert run_study.main(["--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == list(STUDIES)


def test_run_sets_earlier_runs_aside_sweeps_post_steps_every_job_and_reports(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole of `make study-<name>` with the sweep and sinklab-analyze replaced by
    recorders: the sweep gets the experiment, folder and overrides; the post-step runs once per
    job, from the study folder, with one thread; the report section is written."""
    from tests.reports.fake_studies import fake_study

    studies_dir = tmp_path / "outputs" / "studies"
    (studies_dir / "pos_sweep").mkdir(parents=True)
    (studies_dir / "pos_sweep" / "old.txt").write_text("an earlier run")
    (studies_dir / "pos_w4").mkdir()
    step = PostStep(out="pos_w4", overrides=("steps=last", "groups=[sinks]"), parallel=2)
    study = Study("pos_sweep", post_step=step)
    calls: list[tuple[list[str], Path | None, str | None]] = []

    def fake_run(command: list[str], cwd: Path | None = None, env: dict | None = None, **_: object):
        calls.append((command, cwd, (env or {}).get("OMP_NUM_THREADS")))
        if "sinklab.train" in command:  # the sweep: two finished jobs
            fake_study(studies_dir, "pos_sweep", {"seed": "0", "model.pos": "rope,alibi"})
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(run_study.subprocess, "run", fake_run)
    docs = tmp_path / "docs"
    docs.mkdir()

    assert run_study.run(study, studies_dir, docs, ["trainer.max_steps=3"]) == 0

    moved = sorted(p.name for p in studies_dir.iterdir() if "." in p.name)
    assert [m.split(".")[0] for m in moved] == ["pos_sweep", "pos_w4"]
    assert (studies_dir / moved[0] / "old.txt").read_text() == "an earlier run"
    sweep, *posts = calls
    assert sweep[0][1:] == [
        "-m",
        "sinklab.train",
        "-m",
        "experiment=pos_sweep",
        f"hydra.sweep.dir={studies_dir / 'pos_sweep'}",
        "logger=csv",
        "trainer.max_steps=3",
    ]
    assert sorted(c[0][3:] for c in posts) == [
        [f'target="./{job}"', "steps=last", "groups=[sinks]", f'out_dir="../pos_w4/{job}"']
        for job in ("0", "1")
    ]
    assert all(c[0][1:3] == ["-m", "sinklab.analyze"] for c in posts)
    assert all(cwd == studies_dir / "pos_sweep" and threads == "1" for _, cwd, threads in posts)
    assert "<!-- study:pos_sweep -->" in (docs / "results.md").read_text()


def test_a_failing_sweep_stops_before_the_post_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake_run(command: list[str], **_: object) -> subprocess.CompletedProcess:
        calls.append(command)
        return subprocess.CompletedProcess(command, 3)

    monkeypatch.setattr(run_study.subprocess, "run", fake_run)
    assert run_study.run(STUDIES["attention_sweep"], tmp_path, tmp_path / "docs", []) == 3
    assert len(calls) == 1


def _job_folder(folder: Path, overrides: list[str], config: dict) -> None:
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), folder / ".hydra" / "overrides.yaml")
    OmegaConf.save(OmegaConf.create(config), folder / ".hydra" / "config.yaml")
    (folder / "probe").mkdir()
    (folder / "probe" / "probe_set.npz").write_bytes(b"")
    (folder / "metrics").mkdir()
    rows = pd.DataFrame(
        [dict(step=0, tokens_seen=0, layer=-1, head=-1, metric="sink/sink1_pct", value=1.0)]
    )
    rows.to_parquet(folder / "metrics" / "probes.parquet")
    (folder / "summary.json").write_text(json.dumps({"final_val_loss": 1.0}))


def test_jobs_carry_their_keys_from_their_saved_overrides_and_config(tmp_path: Path) -> None:
    """A swept value with commas and '=' in it (a label cannot be split back into keys) is read
    whole from the job's overrides; an encoder whose label would parse as a decoder is read as
    an encoder from its saved config; the label printed in tables is unchanged."""
    study = tmp_path / "frames_sweep"
    study.mkdir()
    params = {"seed": "0", "model.pos": "rope", "data.note": "'a,variant=decoder'"}
    OmegaConf.save(
        OmegaConf.create({"hydra": {"sweeper": {"params": params}}}), study / "multirun.yaml"
    )
    _job_folder(
        study / "0",
        ["seed=0", "model.pos=rope", "data.note=a,variant=decoder", "trainer.threads=1"],
        {"seed": 0, "data": {"objective": "mlm"}},
    )
    (job,) = studies.load_jobs(study)
    assert job.keys == {"model.pos": "rope", "data.note": "a,variant=decoder"}
    assert job.label == "pos=rope,note=a,variant=decoder"  # as tables printed it before
    assert frames_study.job_keys(job) == {
        "pos": "rope",
        "note": "a,variant=decoder",
        "variant": "encoder",
    }
