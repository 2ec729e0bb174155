"""The frames study report: emergence times, majorities and Ruscio et al.'s three claims on
hand-built class curves whose answers are known."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from sinklab.analysis.frames import FRAME_CODE
from sinklab.reports import frames_study, studies
from sinklab.reports.frames_study import frame_emergence, frames_claims, frames_table, majority

STEPS = (0, 1, 2, 4, 8, 16, 32, 64, 100)


def Job(keys: dict[str, str], rows: pd.DataFrame, folder: Path = Path("job")) -> studies.Job:  # noqa: N802
    """A study report's job: the swept keys' values as its saved overrides give them."""
    return studies.Job(folder, keys, rows, None)


def _rows(classes: list[str], star: float = 0.5) -> pd.DataFrame:
    """Model-row frame classes at STEPS (10 tokens a step) and two layers' star-likeness."""
    records = []
    for step, name in zip(STEPS, classes, strict=True):
        base = dict(step=step, tokens_seen=10 * step, head=-1)
        records.append(dict(base, layer=-1, metric="frames/class", value=float(FRAME_CODE[name])))
        for layer, scale in ((0, 0.5), (1, 1.5)):
            records.append(
                dict(base, layer=layer, metric="frames/star_likeness", value=star * scale)
            )
    return pd.DataFrame(records)


EARLY = ["none", "none", "centralized"] + ["centralized"] * 6  # formed at step 2 for good
FLICKER = ["none", "centralized", "none", "distributed", "centralized"] + ["centralized"] * 4


def test_emergence_is_the_start_of_the_final_run_of_classes() -> None:
    assert frame_emergence(_rows(EARLY)) == ("centralized", 20.0, 1000.0)
    # the class flickers before it settles: emergence is step 8, not step 1
    assert frame_emergence(_rows(FLICKER)) == ("centralized", 80.0, 1000.0)
    assert frame_emergence(_rows(["centralized"] * 8 + ["none"])) == ("none", None, 1000.0)
    assert frame_emergence(_rows(["bidirectional"] * 9)) == ("bidirectional", 0.0, 1000.0)


def test_majority_needs_two_thirds() -> None:
    assert majority(["centralized", "centralized", "none"]) == "centralized"
    assert majority(["centralized", "distributed", "none"]) == "mixed"
    assert majority(["centralized", "distributed"]) == "mixed"
    assert majority([]) == "-"


def test_table_rows_per_setting() -> None:
    jobs = [
        Job({"variant": "decoder", "model.pos": "rope"}, _rows(EARLY, star=0.4)),
        Job({"variant": "decoder", "model.pos": "rope"}, _rows(FLICKER, star=0.6)),
    ]
    table = frames_table(jobs)
    row = table.iloc[0]
    assert row["class"] == "centralized"
    assert row["class by seed"] == "centralized / centralized"
    # emergence 20 and 80 tokens -> mean 0.05 k tokens; shares 0.02 and 0.08
    assert row["emerged, k tokens"].startswith("0.05 [")
    assert row["emerged, share of run"].startswith("0.05 [")
    # layer mean of star-likeness: (0.5 + 1.5) / 2 x star, averaged over the seeds
    assert row["star-likeness"] == pytest.approx(0.5)


def _claims(cells: dict[tuple[str, str], list[list[str]]]) -> dict[str, str]:
    jobs = [
        Job({"variant": objective, "model.pos": pos}, _rows(seq))
        for (objective, pos), seqs in cells.items()
        for seq in seqs
    ]
    table = frames_claims(jobs)
    return dict(zip(table["claim (Ruscio et al. 2025)"], table["verdict"], strict=True))


def _settled(name: str) -> list[str]:
    return ["none", "none"] + [name] * 7  # formed at step 2: 2 % of the run


def test_claims_reproduced_when_the_data_say_so() -> None:
    verdicts = _claims(
        {
            ("decoder", "rope"): [_settled("centralized")] * 3,
            ("decoder", "alibi"): [_settled("distributed")] * 3,
            ("encoder", "rope"): [_settled("bidirectional")] * 3,
            ("encoder", "alibi"): [_settled("bidirectional")] * 2 + [_settled("centralized")],
        }
    )
    assert verdicts == {
        "frames form in the earliest stages of training": "reproduced",
        "the position encoding influences the frame type": "reproduced",
        "bidirectional frames belong to encoders": "reproduced",
    }


def test_claims_contradicted_when_the_data_say_the_opposite() -> None:
    late = ["none"] * 8 + ["bidirectional"]  # formed at the last probe: 100 % of the run
    verdicts = _claims(
        {
            ("decoder", "rope"): [late] * 3,
            ("decoder", "learned"): [late] * 3,
            ("encoder", "rope"): [["none"] * 8 + ["centralized"]] * 3,
        }
    )
    # the decoders agree under a relative and an absolute encoding, and are bidirectional
    assert verdicts == {
        "frames form in the earliest stages of training": "contradicted",
        "the position encoding influences the frame type": "contradicted",
        "bidirectional frames belong to encoders": "contradicted",
    }


def test_no_frame_at_all_is_inconclusive_not_a_contradiction() -> None:
    never = ["none"] * 9
    verdicts = _claims(
        {
            ("decoder", "rope"): [_settled("centralized")] * 3,
            ("decoder", "learned"): [_settled("centralized")] * 3,
            ("encoder", "rope"): [never] * 3,
            ("encoder", "alibi"): [never] * 3,
        }
    )
    # the decoders agree on one frame under a relative and an absolute encoding: the encoding
    # does not influence it there; the encoders, with no frame, say nothing either way about
    # the type or about bidirectional frames
    assert verdicts["the position encoding influences the frame type"] == "contradicted"
    assert verdicts["bidirectional frames belong to encoders"] == "inconclusive"
    only_none = _claims({("encoder", "rope"): [never] * 3, ("encoder", "alibi"): [never] * 3})
    assert only_none["the position encoding influences the frame type"] == "inconclusive"
    # one encoding with a frame among encodings without: whether a frame forms, not its type
    one_frame = _claims(
        {
            ("encoder", "rope"): [never] * 3,
            ("encoder", "sinusoidal"): [_settled("distributed")] * 3,
        }
    )
    assert one_frame["the position encoding influences the frame type"] == "inconclusive"


def test_mixed_seeds_make_the_encoding_claim_inconclusive() -> None:
    verdicts = _claims(
        {
            ("decoder", "rope"): [_settled("centralized"), _settled("distributed")],
            ("decoder", "alibi"): [_settled("centralized")] * 2,
        }
    )
    assert verdicts["the position encoding influences the frame type"] == "inconclusive"


def test_a_bidirectional_decoder_contradicts_claim_three() -> None:
    verdicts = _claims(
        {
            ("decoder", "rope"): [_settled("bidirectional")] * 3,
            ("encoder", "rope"): [_settled("bidirectional")] * 3,
        }
    )
    assert verdicts["bidirectional frames belong to encoders"] == "contradicted"
    assert frames_study.EARLY_FRACTION < frames_study.LATE_FRACTION


def _frames_study_folder(root: Path, name: str, data: dict | None = None) -> Path:
    """A two-job study folder `root/name` (rope centralized, alibi distributed, frames at steps
    0 and 100), each job's saved config given `data` when set."""
    from omegaconf import OmegaConf

    from tests.reports.test_study_report import _job

    study = root / name
    study.mkdir()
    OmegaConf.save(
        OmegaConf.create({"hydra": {"sweeper": {"params": {"model.pos": "rope,alibi"}}}}),
        study / "multirun.yaml",
    )
    for i, (pos, cls) in enumerate((("rope", "centralized"), ("alibi", "distributed"))):
        job = study / str(i)
        _job(job, pos, 40.0, [2.0, 5.0])
        if data is not None:
            cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
            cfg.data = data
            OmegaConf.save(cfg, job / ".hydra" / "config.yaml")
        table = job / "metrics" / "probes.parquet"
        frames = _rows(_settled(cls))
        frames = frames[frames["step"].isin([0, 100])]  # the steps _job wrote
        pd.concat([pd.read_parquet(table), frames], ignore_index=True).to_parquet(table)
    return study


def _study_body(root: Path, name: str, data: dict | None = None) -> tuple[str, Path]:
    """The study report of a fake frames study (`_frames_study_folder`), and its docs folder."""
    from sinklab.reports.studies import study_report

    docs = root / "docs"
    docs.mkdir()
    return study_report(_frames_study_folder(root, name, data), docs), docs


def _frame_table_rows(body: str) -> list[str]:
    """The setting rows of a study report's "Reference frames at the final step" table."""
    frame_part = body.split("Reference frames at the final step", 1)[1].split("Ruscio", 1)[0]
    return [line for line in frame_part.splitlines() if line.startswith("| pos=")]


def test_study_report_of_a_frames_sweep_has_the_frame_table_claims_and_figure(
    tmp_path: Path,
) -> None:
    body, docs = _study_body(tmp_path, "frames_sweep")

    rows = _frame_table_rows(body)
    assert rows[0].startswith("| pos=rope | centralized | centralized |")
    assert rows[1].startswith("| pos=alibi | distributed | distributed |")
    assert "the position encoding influences the frame type" in body
    assert (docs / "figures" / "frames_sweep_frame_metrics.png").stat().st_size > 0
    funnel_part = body.split("Pyramidal funnelling", 1)[1].split("Robust summaries", 1)[0]
    assert [line.split(" | ")[0] for line in funnel_part.splitlines() if "| pos=" in line] == [
        "| pos=rope",
        "| pos=alibi",
    ]
    for figure in ("frames_sweep_funnel_training.png", "frames_sweep_funnel_by_layer.png"):
        assert (docs / "figures" / figure).stat().st_size > 0


def _refs(
    layer_positions: dict[int, list[int]], step: int = 100, mass: float = 0.2
) -> pd.DataFrame:
    records = []
    for layer, positions in layer_positions.items():
        base = dict(step=step, tokens_seen=10 * step, layer=layer)
        records.append(dict(base, head=-1, metric="frames/class", value=0.0))
        for i, p in enumerate(positions):
            records.append(dict(base, head=-1, metric=f"frames/ref_position/rank_{i}", value=p))
            records.append(dict(base, head=-1, metric=f"frames/ref_mass/rank_{i}", value=mass))
            records.append(dict(base, head=0, metric=f"frames/ref_position/rank_{i}", value=30))
    return pd.DataFrame(records)


def test_edge_anchors_read_where_each_layers_references_sit() -> None:
    rows = _refs({0: [0, 63], 1: [52, 1], 2: [62], 3: [30, 40], 4: []})
    # n = 64: the edges are positions 0-6 and 57-63; head rows (position 30) are ignored
    assert frames_study.edge_anchors(rows, 64) == ["both ends", "start", "end", "inside", "no ref"]
    # a map without references logs its fallback top 10 % (r <= 0.1): not anchors
    assert frames_study.edge_anchors(_refs({0: [0, 63]}, mass=0.05), 64) == ["no ref"]
    earlier = _refs({0: [0, 63]}, step=50)
    assert frames_study.edge_anchors(pd.concat([earlier, _refs({0: [30]})]), 64) == ["inside"]


def test_anchor_table_counts_layer_maps_over_seeds(tmp_path: Path) -> None:
    jobs = [
        Job({"variant": "encoder"}, _refs({0: [0, 63], 1: [63]}), tmp_path / "a"),
        Job({"variant": "encoder"}, _refs({0: [0, 63], 1: []}), tmp_path / "b"),
    ]
    table = frames_study.anchor_table(jobs).set_index("run")
    row = table.loc["variant=encoder"]
    assert (row["layer maps"], row["both ends"], row["end"], row["no ref"]) == (4, 2, 1, 1)


def _with_objective(folder: Path, objective: str) -> None:
    """A run folder whose saved config says which objective it trained with."""
    from omegaconf import OmegaConf

    (folder / ".hydra").mkdir(parents=True, exist_ok=True)
    OmegaConf.save(
        OmegaConf.create({"data": {"objective": objective}}), folder / ".hydra" / "config.yaml"
    )


def test_a_study_with_the_objective_fixed_reads_it_from_each_runs_config(tmp_path: Path) -> None:
    """frames_end_token_sweep fixes variant=encoder, so its labels name the encoding only."""
    jobs = []
    for i, (pos, cls) in enumerate((("rope", "bidirectional"), ("alibi", "bidirectional")) * 3):
        folder = tmp_path / str(i)
        _with_objective(folder, "mlm")
        jobs.append(Job({"model.pos": pos}, _rows(_settled(cls)), folder))
    assert frames_study.job_keys(jobs[0]) == {"pos": "rope", "variant": "encoder"}
    assert frames_study.job_keys(Job({"variant": "decoder"}, _rows(EARLY), jobs[0].folder)) == {
        "variant": "decoder"
    }  # the label wins where it names the variant
    assert frames_study.job_keys(Job({"model.pos": "rope"}, _rows(EARLY), tmp_path / "none")) == {
        "pos": "rope"
    }  # no saved config: the label alone
    table = frames_claims(jobs).set_index("claim (Ruscio et al. 2025)")
    claim = table.loc["bidirectional frames belong to encoders"]
    assert claim["verdict"] == "reproduced"
    assert "in 6 encoder and 0 decoder runs" in claim["here"]
    assert "encoder classes: alibi bidirectional, rope bidirectional" in claim["here"]
    # the same runs without their configs cannot say what they are
    bare = [Job(j.keys, j.rows, tmp_path / "none") for j in jobs]
    verdicts = frames_claims(bare).set_index("claim (Ruscio et al. 2025)")["verdict"]
    assert verdicts["bidirectional frames belong to encoders"] == "inconclusive"


def test_study_report_of_the_end_token_sweep_has_the_frame_tables_and_claims(
    tmp_path: Path,
) -> None:
    from sinklab.reports.study_catalog import view

    assert view("frames_end_token_sweep").frames and view("frames_end_token_sweep").panels
    data = {"objective": "mlm", "end_token": True}
    body, docs = _study_body(tmp_path, "frames_end_token_sweep", data)

    rows = _frame_table_rows(body)
    assert rows[0].startswith("| pos=rope | centralized |")
    assert rows[1].startswith("| pos=alibi | distributed |")
    claims = body.split("Ruscio et al.'s claims", 1)[1].split("Where the references sit", 1)[0]
    # encoders that formed frames, none of them bidirectional: no bidirectional frame to place
    line = next(x for x in claims.splitlines() if "belong to encoders" in x)
    assert (
        "bidirectional majority (2/3 of seeds) in 0 of 2 encoder and no decoder settings; "
        "bidirectional final class in 0 encoder and 0 decoder runs; "
        "encoder classes: alibi distributed, rope centralized"
    ) in line
    assert line.rstrip().endswith("| inconclusive |")
    assert "<!-- study:frames_end_token_sweep -->" in (docs / "results.md").read_text()
    assert (docs / "figures" / "frames_end_token_sweep_frame_metrics.png").stat().st_size > 0
