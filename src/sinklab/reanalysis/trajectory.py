"""A pretrained model's training trajectory: its Hub revisions measured like a run's checkpoints.

`target=hf:EleutherAI/pythia-70m revisions=log` fetches the step branches one at a time into
the HF cache, measures each with the pretrained path's probe pass (windows of `corpus` cut with
the model's tokenizer), and appends rows that look like a run's: run_id = the model's name,
step from the revision's name, tokens_seen from the family's recipe (`hub.tokens_seen`). The
table is `<folder>/metrics/reanalysis.parquet` with the probe set in `<folder>/probe/`, the
layout of a run folder, so `scripts/plot_emergence.py <folder> --table reanalysis` draws the
emergence curves of a trajectory as it does a run's.

Each row's checkpoint string names the revision and its commit (`hf:<repo>@<rev>:<commit>|...`),
so a re-measure reads the same bytes and a branch that moved is measured again; the
`weights_sha256` column lets a reader see two revisions serving one set of weights (Pythia's
issue #205: some step branches hold the final model), which is also warned about. One model is
loaded at a time and freed before the next; a revision that is missing or fails to load is
skipped with one line, and the others go on. The loop is `runner.analyze_trajectory`; this
module says which revisions, and what the table already knows of them.
"""

from __future__ import annotations

import re
from pathlib import Path

from sinklab.errors import ConfigError
from sinklab.reanalysis import hub, tables

SAME_WEIGHTS_NOTE = "some step branches serve another step's weights (Pythia issue #205)"


def chosen_revisions(
    repo_id: str, revisions: str | tuple[str, ...], refs: dict[str, str]
) -> list[str]:
    """The revisions to measure, in step order: `log` picks them from the repo's refs
    (`hub.log_revisions`); a list is kept as given, each name checked to carry a step."""
    if revisions == "log":
        chosen = hub.log_revisions(list(refs))
        if not chosen:
            raise ConfigError(
                "revisions",
                f"log: hf:{repo_id} has no revision named with a step (step1000, "
                f"step1000-tokens4B); its refs are {sorted(refs)[:8]}; list the revisions",
            )
        return chosen
    names = list(revisions)
    for name in names:
        if hub.parse_revision(name)[0] is None:
            raise ConfigError(
                "revisions",
                f"{name!r} names no training step (step1000, step1000-tokens4B); a trajectory's "
                "rows need one; measure a single revision with revisions=null",
            )
    return sorted(names, key=lambda n: hub.parse_revision(n)[0] or 0)


def known_weights(out: Path, name: str) -> dict[str, str]:
    """weights sha256 -> revision, for the revisions already in the table."""
    df = tables.read_rows(out)
    if not len(df) or "weights_sha256" not in df.columns:
        return {}
    mine = df[(df["run_id"] == name) & df["weights_sha256"].notna()]
    pairs = mine[["weights_sha256", "revision"]].drop_duplicates("weights_sha256")
    return {str(sha): str(rev) for sha, rev in pairs.itertuples(index=False)}


def recorded_commits(out: Path, name: str, repo_id: str) -> dict[str, str]:
    """revision -> the commit its rows in the table were measured at (read from their
    checkpoint string `hf:<repo>@<revision>:<commit>|...`)."""
    df = tables.read_rows(out)
    if not len(df) or "revision" not in df.columns:
        return {}
    mine = df[(df["run_id"] == name) & df["revision"].notna()]
    found = {}
    for revision, checkpoint in (
        mine[["revision", "checkpoint"]].drop_duplicates().itertuples(index=False)
    ):
        pattern = rf"hf:{re.escape(repo_id)}@{re.escape(str(revision))}:([0-9a-f]{{40}})\|"
        match = re.match(pattern, str(checkpoint))
        if match:
            found[str(revision)] = match.group(1)
    return found


def moved(name: str, revision: str, before: str, now: str) -> str:
    """The one-line warning for a branch whose head is not the commit measured before."""
    return (
        f"{name}: {revision} now points at commit {now[:12]}, measured before at {before[:12]}; "
        "the table keeps both, each row naming its commit (force=true re-measures the "
        "recorded one)"
    )


def same_weights(name: str, revision: str, twin: str, sha: str) -> str:
    """The one-line warning for a revision whose weights another revision already had."""
    return (
        f"{name}: {revision} has the same weights as {twin} (sha256 {sha[:12]}); "
        f"{SAME_WEIGHTS_NOTE}"
    )


def other_windows(name: str, revision: str, first: str) -> str:
    """The one-line warning for a revision whose tokenizer cuts the corpus into other windows
    than `first` (a revision, or those measured before) did: its rows are measured on its
    own windows."""
    return (
        f"{name}: {revision}'s tokenizer cuts other probe windows than {first}; its rows are "
        "measured on its own windows (the saved probe set is the last revision's)"
    )
