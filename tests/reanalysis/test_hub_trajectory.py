"""`target=hf:<org>/<name> revisions=log`: a Hub repo's step branches measured as a run's
checkpoints, offline, from a folder laid out as the Hugging Face cache.

The cache holds a tiny random GPT-NeoX (Pythia's architecture) at step0, step1, step2, step4 and step1000 (step1000
serving step4's weights, as some Pythia branches serve another step's), a ref step8 whose
snapshot is missing, and `main` (no step: not part of a trajectory).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
import weakref
from pathlib import Path

import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

from sinklab.analysis.names import SINK1
from sinklab.reanalysis import from_mapping
from sinklab.reanalysis.hub import PYTHIA_TOKENS_PER_STEP
from sinklab.reanalysis.runner import ReanalysisWarning, analyze

TEXT = "the quick brown fox jumps over the lazy dog and the cat sat on the mat again " * 40
REPO = "tiny-org/pythia-tiny"
WEIGHTS = {"step0": 0, "step1": 1, "step2": 2, "step4": 4, "step1000": 4, "main": 4}
STEPS = [0, 1, 2, 4, 1000]


def commit_of(revision: str) -> str:
    """A made-up 40-hex commit per revision (the cache only needs it to name a snapshot)."""
    return hashlib.sha1(revision.encode()).hexdigest()


def _save_model(folder: Path, seed: int) -> None:
    """A tiny GPT-NeoX (random weights from `seed`; parallel residual, a quarter of each head
    rotated, as Pythia) and a tiny BPE tokenizer, as save_pretrained writes them."""
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.train_from_iterator(
        [TEXT], trainers.BpeTrainer(vocab_size=80, special_tokens=["<unk>", "<s>"])
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<s>")
    cfg = GPTNeoXConfig(
        vocab_size=raw.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        rotary_pct=0.25,
        use_parallel_residual=True,
        bos_token_id=1,
        eos_token_id=1,
    )
    torch.manual_seed(seed)
    GPTNeoXForCausalLM(cfg).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def build_hub_cache(cache: Path, repo_id: str, weights: dict[str, int], missing: list[str]) -> Path:
    """models--<org>--<name>/{blobs/<sha256>, snapshots/<commit>/<file> -> blob, refs/<rev>}
    as huggingface_hub lays a download out; each `weights` revision gets the model of its
    seed, each `missing` one only a ref (its snapshot was never downloaded)."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    staged: dict[int, Path] = {}
    for revision, seed in weights.items():
        if seed not in staged:
            staged[seed] = cache.parent / f"staged-{seed}"
            _save_model(staged[seed], seed)
        snapshot = repo / "snapshots" / commit_of(revision)
        snapshot.mkdir(parents=True)
        for file in sorted(staged[seed].iterdir()):
            data = file.read_bytes()
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            (snapshot / file.name).symlink_to(Path("../../blobs") / blob.name)
    for revision in [*weights, *missing]:
        ref = repo / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit_of(revision))
    return repo


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("hf") / "hub"
    build_hub_cache(cache, REPO, WEIGHTS, missing=["step8"])
    return cache


@pytest.fixture
def offline(hub_cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return hub_cache


def _config(tmp_path: Path, **extra: object):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT)
    values = {
        "target": f"hf:{REPO}",
        "corpus": str(corpus),
        "n_windows": 4,
        "seq_len": 16,
        "out_dir": str(tmp_path / "out"),
        "progress": False,
        "groups": ["sinks", "massive"],
        **extra,
    }
    return from_mapping(values)


def _messages(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, ReanalysisWarning)]


def test_log_revisions_measured_as_a_run(offline: Path, tmp_path: Path, monkeypatch) -> None:
    from sinklab.reanalysis import corpus_probe

    loads: list[Path] = []
    alive_at_load: list[int] = []  # models still in memory when the next one is loaded
    models: list[weakref.ref] = []
    real_load = corpus_probe.load_pretrained

    def load(kind: str, path: Path, cache_dir: str | None = None):
        alive_at_load.append(sum(ref() is not None for ref in models))
        loads.append(path)
        model, tokenizer = real_load(kind, path, cache_dir)
        models.append(weakref.ref(model))
        return model, tokenizer

    monkeypatch.setattr(corpus_probe, "load_pretrained", load)
    cfg = _config(tmp_path, revisions="log")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (report,) = analyze(cfg)
    said = _messages(caught)
    assert report.measured == STEPS
    assert report.failed == ["step8"]
    assert len(loads) == 5
    assert alive_at_load == [0] * 5  # each model freed before the next is loaded
    skip = [m for m in said if m.startswith("skipping revision step8:")]
    assert len(skip) == 1 and "\n" not in skip[0] and "HF_HUB_OFFLINE is set" in skip[0]
    assert "hf download tiny-org/pythia-tiny --revision step8" in skip[0]
    same = [m for m in said if "same weights" in m]
    assert same == [
        f"pythia-tiny: step1000 has the same weights as step4 (sha256 "
        f"{_weights_sha(offline, 'step4')[:12]}); some step branches serve another step's "
        "weights (Pythia issue #205)"
    ]

    table = tmp_path / "out" / "metrics" / "reanalysis.parquet"
    assert report.table == table and table.with_suffix(".csv").is_file()
    rows = pd.read_parquet(table)
    assert set(rows["run_id"]) == {"pythia-tiny"}
    per_rev = rows.drop_duplicates("revision").set_index("revision")
    assert sorted(per_rev["step"]) == STEPS
    for revision, row in per_rev.iterrows():
        step = int(revision.removeprefix("step"))
        assert row["step"] == step
        assert row["tokens_seen"] == step * PYTHIA_TOKENS_PER_STEP
        assert row["checkpoint"].startswith(f"hf:{REPO}@{revision}:{commit_of(revision)}|")
        assert row["weights_sha256"] == _weights_sha(offline, revision)
    assert rows.groupby("revision")["checkpoint"].nunique().eq(1).all()  # one pinned source
    # step1000 serves step4's weights: identical numbers; step0 and step1 differ
    assert _values(rows, "step1000").equals(_values(rows, "step4"))
    assert not _values(rows, "step0").equals(_values(rows, "step1"))
    # the probe set sits where a run keeps it: the folder is a run folder for the plots
    assert (tmp_path / "out" / "probe").is_dir()

    # again: every revision is in the table; nothing is downloaded or loaded
    loads.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (again,) = analyze(cfg)
    assert again.measured == [] and sorted(again.skipped) == STEPS and loads == []
    assert again.failed == ["step8"]
    assert not [m for m in _messages(caught) if "same weights" in m]
    assert len(pd.read_parquet(table)) == len(rows)


def _weights_sha(cache: Path, revision: str) -> str:
    """The checksum's definition, computed here from the snapshot's file bytes."""
    snap = cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / commit_of(revision)
    inner = hashlib.sha256((snap / "model.safetensors").read_bytes()).hexdigest()
    return hashlib.sha256(f"model.safetensors:{inner}\n".encode()).hexdigest()


def _values(rows: pd.DataFrame, revision: str) -> pd.Series:
    part = rows[rows["revision"] == revision].sort_values(["metric", "layer", "head"])
    return part["value"].reset_index(drop=True)


def test_a_revision_equals_its_snapshot_measured_as_a_folder(offline: Path, tmp_path: Path) -> None:
    """The trajectory's rows of one revision are the pretrained path's rows of its snapshot
    folder (same probe set, same metrics), whatever the step it is tagged with."""
    (report,) = analyze(_config(tmp_path, revisions=["step2"]))
    assert report.measured == [2]
    rows = pd.read_parquet(report.table)
    snap = offline / f"models--{REPO.replace('/', '--')}" / "snapshots" / commit_of("step2")
    (folder_report,) = analyze(
        _config(tmp_path, target=f"hf:{snap}", out_dir=str(tmp_path / "folder"))
    )
    direct = pd.read_parquet(folder_report.table)
    key = ["metric", "layer", "head"]
    got = rows.sort_values(key)[[*key, "value"]].reset_index(drop=True)
    want = direct.sort_values(key)[[*key, "value"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)


@pytest.mark.filterwarnings("ignore::sinklab.reanalysis.runner.ReanalysisWarning")
def test_emergence_plot_from_a_trajectory(offline: Path, tmp_path: Path) -> None:
    """The run reports' emergence figure (Sink_1 over steps) draws from the trajectory table,
    one point per revision on the model-wide curve."""
    from sinklab.reports import plots
    from sinklab.reports.figures import emergence_report, run_table

    analyze(_config(tmp_path, revisions="log"))
    folder = tmp_path / "out"
    df = run_table(folder, "reanalysis")
    fig = plots.emergence_figure(df, SINK1, logx=True)
    (whole,) = [line for line in fig.axes[0].lines if line.get_label() == "all layers"]
    assert list(whole.get_xdata()) == STEPS
    want = df[(df["metric"] == SINK1) & (df["layer"] == -1) & (df["head"] == -1)]
    assert list(whole.get_ydata()) == list(want.sort_values("step")["value"])
    written = emergence_report(folder, tmp_path / "fig", [SINK1], table="reanalysis")
    assert {p.name for p in written} == {
        "emergence_sink-sink1_pct.png",
        "heatmap_sink-sink1_pct.png",
        "massive_profile.png",
    }
    assert all(p.stat().st_size > 1000 for p in written)


def test_offline_repo_not_cached_is_one_line(offline: Path, tmp_path: Path) -> None:
    from sinklab.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        analyze(_config(tmp_path, target="hf:tiny-org/not-downloaded", revisions="log"))
    message = str(err.value)
    assert "\n" not in message
    assert message == (
        f"target: hf:tiny-org/not-downloaded: HF_HUB_OFFLINE is set and the repo is not in "
        f"{offline}; download it where there is network first (hf download "
        "tiny-org/not-downloaded; huggingface-cli download with huggingface_hub < 1.0) or point "
        "HF_HUB_CACHE / HF_HOME at a cache that has it; HF_HUB_OFFLINE=0 allows downloads"
    )


def test_remote_code_revision_refused(
    offline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A config with auto_map (a model that needs its own Python code) is refused in one line
    before any weight is read; nothing is written."""
    from sinklab.errors import ConfigError

    cache = tmp_path / "hub"
    shutil.copytree(offline, cache, symlinks=True)
    snap = cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / commit_of("step0")
    config = (snap / "config.json").read_text()
    (snap / "config.json").unlink()
    (snap / "config.json").write_text(
        config.replace("{", '{"auto_map": {"AutoModelForCausalLM": "x.Y"},', 1)
    )
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with pytest.raises(ConfigError) as err:
        analyze(_config(tmp_path, revisions=["step0"]))
    assert "auto_map" in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "out" / "metrics" / "reanalysis.parquet").exists()


def test_hub_id_without_revisions_measures_main_once(offline: Path, tmp_path: Path) -> None:
    """revisions=null: the repo's main, measured as a pretrained model (step -1), its rows
    naming the repo, the revision and the commit read."""
    (report,) = analyze(_config(tmp_path))
    assert report.name == "pythia-tiny" and report.measured == [-1]
    assert report.table == tmp_path / "out" / "reanalysis.parquet"
    rows = pd.read_parquet(report.table)
    assert set(rows["run_id"]) == {"pythia-tiny"} and set(rows["step"]) == {-1}
    assert set(rows["checkpoint"]) == {
        f"hf:{REPO}@main:{commit_of('main')}|{tmp_path / 'corpus.txt'}|4x16|bos=none"
    }
    (again,) = analyze(_config(tmp_path))
    assert again.measured == [] and again.skipped == [-1]


def test_listed_revisions_missing_one_skipped(offline: Path, tmp_path: Path) -> None:
    """A listed revision the repo does not have is one line; the others are measured."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (report,) = analyze(_config(tmp_path, revisions=["step4", "step3", "step1"]))
    assert report.measured == [1, 4] and report.failed == ["step3"]
    (line,) = [m for m in _messages(caught) if "step3" in m]
    assert line.startswith(
        f"skipping revision step3: hf:{REPO}: revision 'step3' is not in {offline} and "
        "HF_HUB_OFFLINE is set; download it where there is network first (hf download "
        f"{REPO} --revision step3;"
    )


def test_force_and_a_torn_revision(
    offline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A revision whose weight file is torn is one line and the next is measured; force=true
    measures the rest again without keeping their old rows."""
    cache = tmp_path / "hub"
    shutil.copytree(offline, cache, symlinks=True)
    snap = cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / commit_of("step1")
    (snap / "model.safetensors").unlink()
    (snap / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{not json")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (report,) = analyze(_config(tmp_path, revisions=["step0", "step1", "step2"]))
    assert report.measured == [0, 2] and report.failed == ["step1"]
    (line,) = [m for m in _messages(caught) if "step1" in m]
    assert line.startswith("skipping revision step1: ") and "\n" not in line
    rows = pd.read_parquet(report.table)
    (forced,) = analyze(_config(tmp_path, revisions=["step0", "step2"], force=True))
    assert forced.measured == [0, 2] and forced.skipped == []
    again = pd.read_parquet(forced.table)
    assert len(again) == len(rows)
    key = ["revision", "metric", "layer", "head"]
    pd.testing.assert_series_equal(
        again.sort_values(key)["value"].reset_index(drop=True),
        rows.sort_values(key)["value"].reset_index(drop=True),
    )


def test_main_not_cached_offline_is_one_line(
    offline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "hub"
    shutil.copytree(offline, cache, symlinks=True)
    (cache / f"models--{REPO.replace('/', '--')}" / "refs" / "main").unlink()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    from sinklab.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        analyze(_config(tmp_path))
    assert str(err.value).startswith(
        f"target: hf:{REPO}: revision 'main' is not in {cache} and HF_HUB_OFFLINE is set; "
        f"download it where there is network first (hf download {REPO} --revision main;"
    )


def test_same_weights_across_calls_and_other_windows(
    offline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The duplicate check also sees the revisions an earlier call measured (their checksum is
    in the table); a revision whose tokenizer cuts other windows is said in one line."""
    cache = tmp_path / "hub"
    shutil.copytree(offline, cache, symlinks=True)
    snap = cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / commit_of("step2")
    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.train_from_iterator(
        [TEXT], trainers.BpeTrainer(vocab_size=60, special_tokens=["<unk>", "<s>"])
    )
    (snap / "tokenizer.json").unlink()
    raw.save(str(snap / "tokenizer.json"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    analyze(_config(tmp_path, revisions=["step4", "step1"]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (report,) = analyze(_config(tmp_path, revisions=["step1", "step2", "step1000"]))
    assert report.measured == [2, 1000] and report.skipped == [1]
    said = _messages(caught)
    assert [m for m in said if "same weights" in m] == [
        f"pythia-tiny: step1000 has the same weights as step4 (sha256 "
        f"{_weights_sha(offline, 'step4')[:12]}); some step branches serve another step's "
        "weights (Pythia issue #205)"
    ]
    assert [m for m in said if "windows" in m] == [
        "pythia-tiny: step2's tokenizer cuts other probe windows than the revisions measured "
        "before; its rows are "
        "measured on its own windows (the saved probe set is the last revision's)"
    ]


def _write_tree(repo: Path, revision: str, files: list[str]) -> None:
    """The tree listing huggingface_hub keeps per commit after an online download
    (trees/<commit>.json): offline, it checks a snapshot holds every listed file it asks for."""
    listing = {"format_version": 1, "files": {f: {"size": 1, "blob_id": "0" * 40} for f in files}}
    (repo / "trees").mkdir(exist_ok=True)
    (repo / "trees" / f"{commit_of(revision)}.json").write_text(json.dumps(listing))


def test_offline_snapshot_checked_against_its_tree_listing(
    offline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A snapshot fetched with safetensors only, of a repo that also has .bin files, is
    complete offline (only the weight format it holds is asked for); one that misses a
    tokenizer file its listing names is skipped in one line."""
    cache = tmp_path / "hub"
    shutil.copytree(offline, cache, symlinks=True)
    repo = cache / f"models--{REPO.replace('/', '--')}"
    held = sorted(p.name for p in (repo / "snapshots" / commit_of("step0")).iterdir())
    _write_tree(repo, "step0", [*held, "pytorch_model.bin", "README.md"])
    _write_tree(repo, "step1", [*held, "vocab.json"])
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (report,) = analyze(_config(tmp_path, revisions=["step0", "step1"]))
    assert report.measured == [0] and report.failed == ["step1"]
    (line,) = [m for m in _messages(caught) if "step1" in m]
    assert line == (
        f"skipping revision step1: hf:{REPO}: revision 'step1': the cached snapshot misses "
        f"files; download it where there is network first (hf download {REPO} --revision "
        "step1; huggingface-cli download with huggingface_hub < 1.0) or point HF_HUB_CACHE / "
        "HF_HOME at a cache that has it; HF_HUB_OFFLINE=0 allows downloads"
    )


def test_a_moved_branch_and_force_pins_the_recorded_commit(
    offline: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """step0 measured, then its branch moves (to step1's commit): force=true re-measures the
    commit the table recorded, not the new head; without force the new head is measured beside
    the old rows, with one line."""
    cache = tmp_path / "hub"
    shutil.copytree(offline, cache, symlinks=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    (first,) = analyze(_config(tmp_path, revisions=["step0"]))
    before = pd.read_parquet(first.table)
    ref = cache / f"models--{REPO.replace('/', '--')}" / "refs" / "step0"
    ref.write_text(commit_of("step1"))

    def commits(rows: pd.DataFrame) -> set[str]:
        return {c.split("|")[0].rsplit(":", 1)[1] for c in rows["checkpoint"]}

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (forced,) = analyze(_config(tmp_path, revisions=["step0"], force=True))
    assert forced.measured == [0] and not [m for m in _messages(caught) if "now points" in m]
    again = pd.read_parquet(forced.table)
    assert commits(again) == {commit_of("step0")}
    key = ["metric", "layer", "head"]
    pd.testing.assert_series_equal(
        again.sort_values(key)["value"].reset_index(drop=True),
        before.sort_values(key)["value"].reset_index(drop=True),
    )

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        (moved,) = analyze(_config(tmp_path, revisions=["step0"]))
    assert moved.measured == [0]
    assert [m for m in _messages(caught) if "now points" in m] == [
        f"pythia-tiny: step0 now points at commit {commit_of('step1')[:12]}, measured before at "
        f"{commit_of('step0')[:12]}; the table keeps both, each row naming its commit "
        "(force=true re-measures the recorded one)"
    ]
    assert commits(pd.read_parquet(moved.table)) == {commit_of("step0"), commit_of("step1")}
