"""Figures from real (tiny) runs: sweep comparison on a two-run multirun, emergence report,
the plotting functions on the real metric names, and the scripts' CLIs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from sinklab.analysis.records import read_rows
from sinklab.reanalysis import analyze, from_mapping
from sinklab.reports import plots
from sinklab.reports.figures import compare_sweep, emergence_report, sweep_curves, sweep_runs
from tests.reanalysis.helpers import train_tiny

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


@pytest.fixture(scope="module")
def multirun(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Hydra-style multirun folder: job 0 with RoPE, job 1 with ALiBi."""
    root = tmp_path_factory.mktemp("multirun") / "20260101-000000-pos_sweep"
    train_tiny(root / "0", ["model.pos=rope"])
    train_tiny(root / "1", ["model.pos=alibi"])
    return root


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_sweep_comparison_writes_the_expected_figures(multirun: Path, tmp_path: Path) -> None:
    metrics = ["sink/sink1_pct", "sink/first_token_mass"]
    written = compare_sweep([multirun], "model.pos", tmp_path, metrics=metrics)
    assert sorted(p.name for p in written) == [
        "sweep_model.pos_sink-first_token_mass.png",
        "sweep_model.pos_sink-sink1_pct.png",
    ]
    assert all(p.stat().st_size > 1000 and p.read_bytes()[:4] == b"\x89PNG" for p in written)
    curves = sweep_curves(sweep_runs([multirun]), "model.pos", "sink/sink1_pct")
    assert set(curves["group"]) == {"rope", "alibi"}
    assert sorted(curves["step"].unique()) == [0, 1, 2, 4]


def test_sweep_groups_seeds_into_one_band(multirun: Path, tmp_path: Path) -> None:
    """Two runs with the same value of the key form one group of n=2 (a band)."""
    curves = sweep_curves(
        sweep_runs([multirun / "0", multirun / "1"]), "data.seq_len", "sink/sink1_pct"
    )
    assert curves["group"].nunique() == 1 and curves["run"].nunique() == 2
    fig = plots.sweep_figure(curves, "sink/sink1_pct", "data.seq_len")
    assert len(fig.axes[0].collections) == 1  # the min-max band
    plots.save_figure(fig, tmp_path / "band.png")


def test_compare_sweep_script_and_bad_key(
    multirun: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    script = _script("compare_sweep")
    assert (
        script.main(
            [
                str(multirun),
                "--by",
                "model.pos",
                "--metrics",
                "sink/sink1_pct",
                "--out",
                str(tmp_path),
            ]
        )
        == 0
    )
    assert (tmp_path / "sweep_model.pos_sink-sink1_pct.png").is_file()
    assert (tmp_path / "sweep_model.pos_sink-sink1_pct.csv").is_file()
    assert script.main([str(multirun), "--by", "model.nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: by:") and "\n" not in err


def test_emergence_report_and_script(multirun: Path, tmp_path: Path) -> None:
    run = multirun / "0"
    written = emergence_report(run, tmp_path, metrics=["sink/first_token_mass"], map_steps=[0, 4])
    assert sorted(p.name for p in written) == [
        "attention_maps.png",
        "emergence_sink-first_token_mass.png",
        "heatmap_sink-first_token_mass.png",
        "massive_profile.png",
    ]
    out = tmp_path / "script"
    assert (
        _script("plot_emergence").main(
            [str(run), "--metrics", "sink/sink1_pct", "--out", str(out), "--x", "tokens_seen"]
        )
        == 0
    )
    assert (out / "emergence_sink-sink1_pct.png").is_file()


def test_activation_profile_uses_the_registry_names(multirun: Path) -> None:
    rows = read_rows(multirun / "0" / "metrics" / "probes.parquet")
    fig = plots.activation_profile_figure(rows)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["top-1", "top-2", "top-3", "median"]
    n_layers = 2
    assert all(len(line.get_xdata()) == n_layers for line in fig.axes[0].get_lines())


def test_multirun_target_writes_one_table_per_job(multirun: Path, tmp_path: Path) -> None:
    reports = analyze(
        from_mapping(
            {"target": str(multirun), "steps": [4], "out_dir": str(tmp_path), "progress": False}
        )
    )
    assert [r.name for r in reports] == ["0", "1"]
    for job in ("0", "1"):
        table = tmp_path / job / "reanalysis.parquet"
        assert sorted(read_rows(table)["step"].unique()) == [4]
        assert table.with_suffix(".csv").is_file()


def test_callback_figure_functions_keep_their_signatures() -> None:
    """The probe callback calls these for W&B images: maps in, PIL image out."""
    import numpy as np

    maps = [np.tril(np.full((8, 8), 0.1)) for _ in range(3)]
    image = plots.figure_to_image(plots.attention_maps_figure(maps, title="step 1"))
    assert image.mode == "RGB" and image.size[0] > 100


def test_per_layer_metric_sweeps_as_the_mean_over_layers(multirun: Path) -> None:
    """massive/* has layer rows only: layer -1 falls back to their mean, not an empty plot."""
    curves = sweep_curves(sweep_runs([multirun]), "model.pos", "massive/top1_over_median")
    assert len(curves) == 8 and curves["value"].notna().all()
    with pytest.raises(ValueError, match="no rows"):
        sweep_curves(sweep_runs([multirun]), "model.pos", "massive/top1_over_median", layer=7)
