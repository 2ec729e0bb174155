"""The study report reads a sweep folder and rewrites only its own section of results.md."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from sinklab.reports.studies import study_report


def _job(folder: Path, pos: str, sink1: float, ratios: list[float], seed: int = 0) -> None:
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(
        OmegaConf.create([f"seed={seed}", f"model.pos={pos}", "trainer.threads=1"]),
        folder / ".hydra" / "overrides.yaml",
    )
    OmegaConf.save(
        OmegaConf.create({"seed": seed, "model": {"pos": pos}}), folder / ".hydra" / "config.yaml"
    )
    (folder / "probe").mkdir()
    (folder / "probe" / "probe_set.npz").write_bytes(b"")
    rows = []
    for step, scale in ((0, 0.0), (100, 1.0)):
        rows.append(
            dict(
                step=step,
                tokens_seen=step * 10,
                layer=-1,
                head=-1,
                metric="sink/sink1_pct",
                value=sink1 * scale,
            )
        )
        for layer, ratio in enumerate(ratios):
            rows.append(
                dict(
                    step=step,
                    tokens_seen=step * 10,
                    layer=layer,
                    head=-1,
                    metric="massive/top1_over_median",
                    value=ratio * (1 + scale),
                )
            )
    (folder / "metrics").mkdir()
    pd.DataFrame(rows).to_parquet(folder / "metrics" / "probes.parquet")
    (folder / "summary.json").write_text(json.dumps({"final_val_loss": 1.5}))


def test_table_and_section(tmp_path: Path) -> None:
    study = tmp_path / "pos_sweep"
    study.mkdir()
    OmegaConf.save(
        OmegaConf.create({"hydra": {"sweeper": {"params": {"model.pos": "rope,alibi"}}}}),
        study / "multirun.yaml",
    )
    _job(study / "0", "rope", 40.0, [2.0, 5.0])
    _job(study / "1", "alibi", 10.0, [3.0, 1.0])
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "results.md").write_text(
        "# Results\n\nintro\n\n<!-- study:pos_sweep -->\nold\n<!-- /study:pos_sweep -->\n\nafter\n"
    )

    body = study_report(study, docs)

    lines = [line for line in body.splitlines() if line.startswith("| pos=")]
    assert lines[0].split(" | ")[:2] == ["| pos=rope", "40"]
    assert (
        "| 10 " in lines[1] and "| 6 " in lines[1]
    )  # alibi: Sink_1 10, max layer top1/median 3 * 2
    text = (docs / "results.md").read_text()
    assert (
        "old" not in text
        and text.startswith("# Results\n\nintro")
        and text.rstrip().endswith("after")
    )
    assert (docs / "figures" / "pos_sweep_sink_sink1_pct.png").exists()
    study_report(study, docs)  # idempotent: the section is replaced, not appended
    assert (docs / "results.md").read_text().count("<!-- study:pos_sweep -->") == 1


def test_seeds_of_one_setting_share_a_row(tmp_path: Path) -> None:
    study = tmp_path / "pos_sweep"
    study.mkdir()
    params = {"seed": "0,1", "model.pos": "rope"}
    OmegaConf.save(
        OmegaConf.create({"hydra": {"sweeper": {"params": params}}}), study / "multirun.yaml"
    )
    _job(study / "0", "rope", 40.0, [2.0], seed=0)
    _job(study / "1", "rope", 20.0, [4.0], seed=1)
    body = study_report(study, tmp_path / "docs")
    rows = [line for line in body.splitlines() if line.startswith("| pos=rope")]
    assert len(rows) == 2  # one row per setting in the final table and in the robust one
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1] == "30" and cells[-1] == "40 / 20"  # mean Sink_1, then seed by seed
    assert "seeds 0, 1" in body


def test_attention_sweep_feeds_three_sections_and_quant_merges_analysis_rows(
    tmp_path: Path,
) -> None:
    """One attention sweep writes the attention, streaming and quant sections. In the quant
    section, rows only sinklab-analyze measured (prefixed sinks on the final checkpoint) reach
    the second table; a metric both tables have is taken from the probe table, never twice."""
    study = tmp_path / "attention_sweep"
    study.mkdir()
    OmegaConf.save(
        OmegaConf.create({"hydra": {"sweeper": {"params": {"model.pos": "rope,alibi"}}}}),
        study / "multirun.yaml",
    )
    for i, (pos, static) in enumerate((("rope", 12.5), ("alibi", 3.25))):
        job = study / str(i)
        _job(job, pos, 40.0, [2.0, 5.0])
        extra = pd.DataFrame(
            [
                dict(step=100, tokens_seen=1000, layer=-1, head=-1, metric=m, value=v)
                for m, v in (
                    ("quant/prefix/bos/ppl/per_tensor_static", static),
                    ("quant/prefix/bos/len", 1.0),
                    ("sink/sink1_pct", -99.0),  # re-measured: must not replace the probe row
                )
            ]
        )
        extra.to_parquet(job / "metrics" / "reanalysis.parquet")
        # the 4-bit re-run beside the study: same names, renamed quant_w4/ by the report
        w4 = tmp_path / "attention_sweep_w4" / str(i)
        w4.mkdir(parents=True)
        four = extra.copy()
        four["metric"] = ["quant/ppl_increase/per_tensor_static", "quant/prefix/bos/len", "x"]
        four["value"] = [static * 2, 1.0, 0.0]
        four.to_parquet(w4 / "reanalysis.parquet")
    docs = tmp_path / "docs"
    docs.mkdir()

    body = study_report(study, docs)

    head, table = body.split("Prefixed sinks on the final checkpoints", 1)
    table = table.split("The same final checkpoints at 4 bits", 1)[0]
    rows = [line for line in table.splitlines() if line.startswith("| pos=")]
    header = next(line for line in table.splitlines() if line.startswith("| run"))
    assert header == "| run | BOS len | BOS static |", "unmeasured columns are left out"
    assert rows == ["| pos=rope | 1 | 12.5 |", "| pos=alibi | 1 | 3.25 |"]
    four_bit = body.split("at 4 bits", 1)[1].split("Robust summaries", 1)[0]
    rows4 = [line for line in four_bit.splitlines() if line.startswith("| pos=")]
    assert rows4 == ["| pos=rope | 25 | 1 |", "| pos=alibi | 6.5 | 1 |"]
    main = [line for line in head.splitlines() if line.startswith("| pos=rope")]
    assert main[0].split(" | ")[1] == "40", "Sink_1 comes from the probe table"
    assert (docs / "figures" / "quant_sweep_outliers_vs_sink.png").stat().st_size > 0
    results = (docs / "results.md").read_text()
    for section in ("attention_sweep", "streaming_sweep", "quant_sweep"):
        block = results.split(f"<!-- study:{section} -->", 1)[1].split("<!-- /study:", 1)[0]
        assert (
            "generated by `make study-attention_sweep` from `outputs/studies/attention_sweep/`"
            in block
        )
        assert "| pos=rope | 40 |" in block, f"{section}: the same runs"
    assert "Prefixed sinks" not in results.split("<!-- study:quant_sweep -->")[0]


def test_final_value_reads_the_first_probe_with_at_start() -> None:
    """The residual peak is read against its step-0 value: "last@start" is the last layer at
    the first probe, "last" at the final one; a layer-less metric gives None."""
    from sinklab.reports.studies import final_value

    rows = pd.DataFrame(
        [
            dict(step=s, layer=layer, head=-1, metric="m", value=10 * s + layer)
            for s in (0, 5, 9)
            for layer in (0, 1)
        ]
    )
    assert final_value(rows, "m", "last") == 91.0
    assert final_value(rows, "m", "last@start") == 1.0
    assert final_value(rows, "m", "min@start") == 0.0
    assert final_value(rows, "other", "last@start") is None
