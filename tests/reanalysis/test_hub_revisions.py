"""hub.py without a model: revision names -> steps and tokens, which revisions `log` keeps,
the cache and offline settings read at call time, Hub ids vs local folders, the refs
listing (online mocked, offline from the cache) and the weights checksum."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from types import SimpleNamespace

import pytest

from sinklab.errors import ConfigError
from sinklab.reanalysis import from_mapping, hub
from sinklab.reanalysis.targets import HubTarget, resolve
from sinklab.reanalysis.trajectory import chosen_revisions

PYTHIA_SMALL = [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512]
PYTHIA_BRANCHES = [f"step{s}" for s in PYTHIA_SMALL + list(range(1000, 143001, 1000))]


@pytest.mark.parametrize(
    ("name", "step", "tokens"),
    [
        ("step0", 0, None),
        ("step143000", 143000, None),
        ("step1000-tokens4B", 1000, 4 * 10**9),
        ("stage1-step1907359-tokens4001B", 1907359, 4001 * 10**9),
        ("main", None, None),
        ("mystep5", None, None),
        ("step5x", None, None),
        ("v1.0", None, None),
    ],
)
def test_parse_revision(name: str, step: int | None, tokens: int | None) -> None:
    assert hub.parse_revision(name) == (step, tokens)


def test_tokens_seen_by_family() -> None:
    assert hub.tokens_seen("EleutherAI/pythia-70m", "step1000") == 1000 * 1024 * 2048
    assert hub.tokens_seen("EleutherAI/pythia-1b-deduped", "step0") == 0
    assert hub.tokens_seen("allenai/OLMo-1B", "step20000-tokens84B") == 84 * 10**9
    assert hub.tokens_seen("someone/model", "step5") == -1  # no recipe, no tokens in the name


def test_log_keeps_pythia_small_steps_then_log_spaced_thousands() -> None:
    chosen = hub.log_revisions([*reversed(PYTHIA_BRANCHES), "main", "v0"])
    want = PYTHIA_SMALL + [1000 * 2**k for k in range(8)] + [143000]
    assert chosen == [f"step{s}" for s in want]


def test_log_takes_the_nearest_thousand_within_a_factor_sqrt2() -> None:
    steps = list(range(3000, 30001, 3000))  # 3000, 6000, ..., 30000
    chosen = [hub.parse_revision(n)[0] for n in hub.log_revisions([f"step{s}" for s in steps])]
    # 1000 and 2000 have no step within sqrt 2 (3000 is x3 and x1.5 away); 4000 -> 3000,
    # 8000 -> 9000, 16000 -> 15000, 32000 -> 30000 (also the last)
    assert chosen == [3000, 9000, 15000, 30000]
    for got, target in zip(chosen, [4000, 8000, 16000, 32000], strict=True):
        assert abs(math.log(got / target)) <= math.log(math.sqrt(2))


def test_log_olmo_names_and_duplicate_steps() -> None:
    names = [f"step{s}-tokens{4 * s // 1000}B" for s in range(1000, 9001, 1000)]
    assert hub.log_revisions(names) == [
        "step1000-tokens4B",
        "step2000-tokens8B",
        "step4000-tokens16B",
        "step8000-tokens32B",
        "step9000-tokens36B",
    ]
    # OLMo 2's stages restart their count: one name per step, the plain one first
    assert hub.by_step(["stage2-step1000-tokens5B", "stage1-step1000-tokens3B"]) == {
        1000: "stage1-step1000-tokens3B"
    }
    assert hub.by_step(["stage1-step1000", "step1000"]) == {1000: "step1000"}


def test_chosen_revisions_refusals() -> None:
    refs = {"main": "a" * 40, "v1": "b" * 40}
    with pytest.raises(ConfigError) as err:
        chosen_revisions("org/m", "log", refs)
    assert str(err.value) == (
        "revisions: log: hf:org/m has no revision named with a step (step1000, "
        "step1000-tokens4B); its refs are ['main', 'v1']; list the revisions"
    )
    with pytest.raises(ConfigError) as err:
        chosen_revisions("org/m", ("step4", "main"), refs)
    assert str(err.value) == (
        "revisions: 'main' names no training step (step1000, step1000-tokens4B); a "
        "trajectory's rows need one; measure a single revision with revisions=null"
    )
    assert chosen_revisions("org/m", ("step40", "step4-tokens1B"), refs) == [
        "step4-tokens1B",
        "step40",
    ]


def test_hub_id_or_local_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert hub.is_hub_id("EleutherAI/pythia-70m")
    assert resolve("hf:EleutherAI/pythia-70m") == [HubTarget("EleutherAI/pythia-70m")]
    assert HubTarget("EleutherAI/pythia-70m").name == "pythia-70m"
    for not_an_id in ("a/b/c", "/abs/path", "pythia", "org/", "./org"):
        assert not hub.is_hub_id(not_an_id)
    (tmp_path / "org" / "name").mkdir(parents=True)  # a local folder of that spelling wins
    assert not hub.is_hub_id("org/name")
    with pytest.raises(ConfigError) as err:
        resolve("hf:org/name")
    assert str(err.value) == "target: hf:org/name: not a Hugging Face model folder (no config.json)"
    with pytest.raises(ConfigError) as err:
        resolve("hf:org/name/sub")
    assert str(err.value) == "target: hf:org/name/sub: no such folder, and not a Hub id (org/name)"


def test_revisions_need_a_hub_target(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigError) as err:
        from_mapping({"target": f"hf:{tmp_path}", "revisions": "log"})
    assert str(err.value) == (
        f"revisions: a trajectory needs a Hub model target (hf:<org>/<name>), not "
        f"'hf:{tmp_path}'; use revisions=null"
    )
    cfg = from_mapping({"target": "hf:org/m", "revisions": "step0, step1000,step0"})
    assert cfg.revisions == ("step0", "step1000")
    assert from_mapping({"target": "hf:org/m", "revisions": "log"}).revisions == "log"
    assert from_mapping({"target": "hf:org/m"}).revisions is None
    with pytest.raises(ConfigError) as err:
        from_mapping({"target": "hf:org/m", "steps": "log"})
    assert str(err.value) == (
        "steps: 'log': a Hub model's checkpoints are its revisions; use revisions=log or "
        "revisions=[step1000, ...]"
    )


def test_cache_and_offline_read_at_call_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hub.hub_cache_dir() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    assert hub.hub_cache_dir() == tmp_path / "cache"
    assert hub.repo_folder("org/m") == tmp_path / "cache" / "models--org--m"
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    for value, offline in (("1", True), ("true", True), ("0", False), ("", False)):
        monkeypatch.setenv("HF_HUB_OFFLINE", value)
        assert hub.hub_offline() is offline


def _cache_with_refs(cache: Path, refs: dict[str, str]) -> None:
    for name, commit in refs.items():
        ref = cache / "models--org--m" / "refs" / name
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)


def test_refs_online_from_the_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    ref = lambda name, commit: SimpleNamespace(name=name, target_commit=commit)  # noqa: E731
    listing = SimpleNamespace(
        branches=[ref("main", "a" * 40), ref("step0", "b" * 40)], tags=[ref("v1", "c" * 40)]
    )
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_refs", lambda self, repo: listing)
    assert hub.list_refs("org/m") == {"main": "a" * 40, "step0": "b" * 40, "v1": "c" * 40}


def test_refs_when_the_hub_is_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    def down(self, repo):
        raise ConnectionError("no route to host")

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(huggingface_hub.HfApi, "list_repo_refs", down)
    with pytest.raises(ConfigError) as err:
        hub.list_refs("org/m")
    assert str(err.value).startswith(
        f"target: hf:org/m: the Hub cannot be reached (ConnectionError) and the repo is not in "
        f"{tmp_path}; download it where there is network first (hf download org/m;"
    )
    _cache_with_refs(tmp_path, {"step0": "d" * 40, "pr/1": "e" * 40})
    assert hub.list_refs("org/m") == {"pr/1": "e" * 40, "step0": "d" * 40}


def test_weight_patterns_prefer_safetensors(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    files = {
        "both": ["config.json", "model.safetensors", "pytorch_model.bin"],
        "bin": ["config.json", "pytorch_model.bin"],
    }
    monkeypatch.setattr(
        huggingface_hub.HfApi, "list_repo_files", lambda self, repo, revision: files[revision]
    )
    assert hub._weight_patterns("org/m", "both") == list(hub.SAFETENSORS_PATTERNS)
    assert hub._weight_patterns("org/m", "bin") == list(hub.BIN_PATTERNS)


def test_weights_checksum(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, shard2 in ((a, b"two"), (b, b"TWO")):
        folder.mkdir()
        (folder / "model-00001-of-00002.safetensors").write_bytes(b"one")
        (folder / "model-00002-of-00002.safetensors").write_bytes(shard2)
        (folder / "pytorch_model.bin").write_bytes(b"ignored while safetensors exist")
    lines = "".join(
        f"{name}:{hashlib.sha256(data).hexdigest()}\n"
        for name, data in (
            ("model-00001-of-00002.safetensors", b"one"),
            ("model-00002-of-00002.safetensors", b"two"),
        )
    )
    assert hub.weights_sha256(a) == hashlib.sha256(lines.encode()).hexdigest()
    assert hub.weights_sha256(a) != hub.weights_sha256(b)
    only_bin = tmp_path / "c"
    only_bin.mkdir()
    (only_bin / "pytorch_model.bin").write_bytes(b"x")
    inner = hashlib.sha256(b"x").hexdigest()
    assert (
        hub.weights_sha256(only_bin)
        == hashlib.sha256(f"pytorch_model.bin:{inner}\n".encode()).hexdigest()
    )
