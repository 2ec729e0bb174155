"""Models on the Hugging Face Hub: fetch a revision into the user's HF cache, list a repo's
revisions, and read a training step (and tokens seen) from a revision's name.

`target=hf:<org>/<name>` goes through `huggingface_hub.snapshot_download`, so the files land
in (and are read from) the same cache transformers uses (HF_HOME / HF_HUB_CACHE), with its
download progress bars. Only what sinklab reads is fetched: the config, the tokenizer files
and the weights (safetensors, or PyTorch .bin files when a revision has no safetensors).

The environment is read when a function is called, not when huggingface_hub was imported,
so HF_HUB_CACHE / HF_HUB_OFFLINE set by a launcher or a test take effect (huggingface_hub
freezes both into `constants` at import time; we pass them explicitly).

Trajectories: Pythia's step branches (`step0`, `step1`, ... `step143000`, 1024 x 2048 tokens
a step) and OLMo's (`step1000-tokens4B`, `stage1-step1000-tokens3B`) name their step, so each
revision becomes one point on a run-like curve (see `trajectory.py`).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from sinklab.errors import ConfigError

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")
_STEP = re.compile(r"(?:^|[-_])step(\d+)(?=$|[-_])")
_TOKENS = re.compile(r"(?:^|[-_])tokens(\d+)B(?=$|[-_])")

# the files sinklab reads from a model repo; weights are picked per revision (`_weight_patterns`)
META_PATTERNS = (
    "config.json",
    "generation_config.json",
    "tokenizer*",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    "*.model",
)
SAFETENSORS_PATTERNS = ("*.safetensors", "*.safetensors.index.json")
BIN_PATTERNS = ("*.bin", "*.bin.index.json")

# Pythia (Biderman et al. 2023): every model saw 1024 sequences of 2048 tokens per step
PYTHIA_TOKENS_PER_STEP = 1024 * 2048
# `log` keeps these small steps exactly (Pythia's early branches), then thousands log-spaced
LOG_SMALL_STEPS = (0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class RevisionUnavailable(Exception):
    """One revision could not be fetched (missing, not cached offline): skip it, go on."""


@dataclass(frozen=True)
class Snapshot:
    """One revision of a repo on disk: `folder` is the cache's snapshots/<commit> folder."""

    repo_id: str
    revision: str
    commit: str
    folder: Path


def is_hub_id(text: str) -> bool:
    """`org/name` that is not an existing local path (a local folder always wins)."""
    return bool(_HUB_ID.fullmatch(text)) and not Path(text).expanduser().exists()


def model_name(repo_id: str) -> str:
    """The short name used for folders and the run_id column (`EleutherAI/pythia-70m` ->
    `pythia-70m`)."""
    return repo_id.split("/", 1)[1]


def hub_cache_dir() -> Path:
    """The HF cache, from the environment now: HF_HUB_CACHE, else HF_HOME/hub, else
    huggingface_hub's default (~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expandvars(os.environ["HF_HUB_CACHE"])).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.path.expandvars(os.environ["HF_HOME"])).expanduser() / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) as set now."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def repo_folder(repo_id: str) -> Path:
    """The repo's folder in the cache: models--<org>--<name>."""
    return hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def download_hint(repo_id: str, revision: str | None = None) -> str:
    """How to make a repo (revision) available offline, for the one-line errors."""
    rev = f" --revision {revision}" if revision else ""
    return (
        f"download it where there is network first (hf download {repo_id}{rev}; "
        f"huggingface-cli download with huggingface_hub < 1.0) or point HF_HUB_CACHE / HF_HOME "
        f"at a cache that has it; HF_HUB_OFFLINE=0 allows downloads"
    )


def cached_refs(repo_id: str) -> dict[str, str]:
    """revision name -> commit, from the cache's refs/ folder (branch names may hold '/')."""
    refs = repo_folder(repo_id) / "refs"
    if not refs.is_dir():
        return {}
    return {
        p.relative_to(refs).as_posix(): p.read_text().strip()
        for p in sorted(refs.rglob("*"))
        if p.is_file()
    }


def list_refs(repo_id: str) -> dict[str, str]:
    """revision name (branches and tags) -> commit: from the Hub, or from the cache when
    offline or the Hub cannot be reached. A repo neither reachable nor cached is a one-line
    ConfigError on `target` saying how to pre-download it."""
    if not hub_offline():
        from huggingface_hub import HfApi
        from huggingface_hub.errors import RepositoryNotFoundError

        try:
            refs = HfApi().list_repo_refs(repo_id)
        except RepositoryNotFoundError:
            raise ConfigError(
                "target", f"hf:{repo_id}: no such model repo on the Hub (or it is private/gated)"
            ) from None
        except Exception as err:  # connection down, Hub error: fall back to the cache
            cached = cached_refs(repo_id)
            if cached:
                return cached
            raise ConfigError(
                "target",
                f"hf:{repo_id}: the Hub cannot be reached ({type(err).__name__}) and the repo is "
                f"not in {hub_cache_dir()}; {download_hint(repo_id)}",
            ) from None
        return {r.name: r.target_commit for r in [*refs.branches, *refs.tags]}
    cached = cached_refs(repo_id)
    if not cached:
        raise ConfigError(
            "target",
            f"hf:{repo_id}: HF_HUB_OFFLINE is set and the repo is not in {hub_cache_dir()}; "
            f"{download_hint(repo_id)}",
        )
    return cached


def _weight_patterns(repo_id: str, revision: str) -> list[str]:
    """The weight files to fetch: safetensors when the revision has them, else the .bin ones
    (read later with weights_only=True). Offline: the format the cached snapshot holds, so a
    snapshot downloaded with safetensors only is not called incomplete for its .bin files."""
    if hub_offline():
        commit = cached_refs(repo_id).get(revision, revision)
        snapshot = repo_folder(repo_id) / "snapshots" / commit
        if any(snapshot.glob("*.safetensors")):
            return list(SAFETENSORS_PATTERNS)
        if any(snapshot.glob("*.bin")):
            return list(BIN_PATTERNS)
        return [*SAFETENSORS_PATTERNS, *BIN_PATTERNS]
    from huggingface_hub import HfApi

    try:
        files = HfApi().list_repo_files(repo_id, revision=revision)
    except Exception:  # snapshot_download reports the real problem
        return [*SAFETENSORS_PATTERNS, *BIN_PATTERNS]
    if any(f.endswith(".safetensors") for f in files):
        return list(SAFETENSORS_PATTERNS)
    return list(BIN_PATTERNS)


def fetch(
    repo_id: str, revision: str | None = None, progress: bool = True, commit: str | None = None
) -> Snapshot:
    """Download (or find in the cache) one revision: config, tokenizer and weights only;
    `commit` pins the bytes (the commit a table recorded), else the revision's head is read.

    Raises `RevisionUnavailable` (one line naming the revision) when the revision does not
    exist, or is not cached while offline; the caller skips it and goes on.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        IncompleteSnapshotError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    rev = revision or "main"
    ask = commit or rev
    named = repr(rev) if commit is None else f"{rev!r} at commit {commit}"
    kwargs = {}
    if not progress:
        from tqdm.auto import tqdm

        class _Quiet(tqdm):  # type: ignore[misc, valid-type]
            def __init__(self, *args, **kw):
                super().__init__(*args, **{**kw, "disable": True})

        kwargs["tqdm_class"] = _Quiet
    try:
        folder = snapshot_download(
            repo_id,
            revision=ask,
            cache_dir=hub_cache_dir(),
            local_files_only=hub_offline(),
            allow_patterns=[*META_PATTERNS, *_weight_patterns(repo_id, ask)],
            **kwargs,
        )
    except RevisionNotFoundError:
        raise RevisionUnavailable(f"hf:{repo_id}: revision {named} does not exist") from None
    except RepositoryNotFoundError:
        raise ConfigError(
            "target", f"hf:{repo_id}: no such model repo on the Hub (or it is private/gated)"
        ) from None
    except IncompleteSnapshotError:
        raise RevisionUnavailable(
            f"hf:{repo_id}: revision {named}: the cached snapshot misses files; "
            f"{download_hint(repo_id, ask)}"
        ) from None
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if hub_offline() else "the Hub cannot be reached"
        raise RevisionUnavailable(
            f"hf:{repo_id}: revision {named} is not in {hub_cache_dir()} and {why}; "
            f"{download_hint(repo_id, ask)}"
        ) from None
    except OSError as err:  # an incomplete snapshot, a disk error
        raise RevisionUnavailable(f"hf:{repo_id}: revision {named}: {err}") from None
    path = Path(folder)
    if not (path / "config.json").is_file():
        raise RevisionUnavailable(f"hf:{repo_id}: revision {named} has no config.json")
    return Snapshot(repo_id, rev, path.name, path)


def parse_revision(name: str) -> tuple[int | None, int | None]:
    """(step, tokens seen) as the revision's name says: `step1000` -> (1000, None);
    OLMo's `step1000-tokens4B` / `stage1-step1000-tokens3B` -> (1000, 4e9); None when absent."""
    step = _STEP.search(name)
    tokens = _TOKENS.search(name)
    return (
        int(step.group(1)) if step else None,
        int(tokens.group(1)) * 10**9 if tokens else None,
    )


def tokens_seen(repo_id: str, revision: str) -> int:
    """Tokens seen at a revision: from its name (OLMo), else the family's recipe (Pythia:
    step x 2,097,152), else -1 (unknown)."""
    step, tokens = parse_revision(revision)
    if tokens is not None:
        return tokens
    if step is not None and model_name(repo_id).lower().startswith("pythia"):
        return step * PYTHIA_TOKENS_PER_STEP
    return -1


def by_step(names: list[str]) -> dict[int, str]:
    """step -> revision name, for the names that carry a step. Two names of one step (OLMo 2's
    stages restart their count): the one that starts with `step`, else the first by name."""
    out: dict[int, str] = {}
    for name in sorted(names, key=lambda n: (not n.startswith("step"), n)):
        step, _ = parse_revision(name)
        if step is not None and step not in out:
            out[step] = name
    return out


def log_revisions(names: list[str]) -> list[str]:
    """`revisions=log`: step0, 1, 2, 4, ..., 512 where present, then the steps nearest to
    1000 x 2^k (within a factor sqrt 2, on a log scale), then the last step; sorted by step."""
    steps = by_step(names)
    if not steps:
        return []
    keep = {s for s in LOG_SMALL_STEPS if s in steps}
    large = sorted(s for s in steps if s > LOG_SMALL_STEPS[-1])
    last = max(steps)
    target = 1000
    while large and target <= last * math.sqrt(2):
        nearest = min(large, key=lambda s: abs(math.log(s / target)))
        if abs(math.log(nearest / target)) <= math.log(math.sqrt(2)):
            keep.add(nearest)
        target *= 2
    keep.add(last)
    return [steps[s] for s in sorted(keep)]


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a model folder: its safetensors, else its .bin files."""
    files = sorted(folder.glob("*.safetensors"))
    return files or sorted(folder.glob("*.bin"))


def weights_sha256(folder: Path) -> str:
    """A checksum of the weights: sha256 over each weight file's name and sha256 (the bytes,
    read in chunks), so two revisions serving the same files get the same value."""
    outer = hashlib.sha256()
    for path in weight_files(folder):
        inner = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                inner.update(chunk)
        outer.update(f"{path.name}:{inner.hexdigest()}\n".encode())
    return outer.hexdigest()
