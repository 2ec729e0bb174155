"""The reference-frame studies (`frames_sweep`, `frames_text_sweep`, `frames_end_token_sweep`;
issue 17): per setting the final frame class, when it formed, the continuous frame metrics,
and Ruscio et al.'s three claims tested point by point with stated rules.

A setting is one (objective, position encoding) cell of the sweep, with its seeds. Works on
the study report's `Job`s (`reports.studies`): anything with `.label`, `.keys` (the swept
keys' values from the run's saved overrides) and `.rows` (the run's tidy probe rows). The
objective is the swept `variant` (encoder | decoder); a study that fixes it instead of
sweeping it (frames_end_token_sweep: encoders only) has no such key, and then it is read from
the run's saved config (`.folder`: data.objective mlm is an encoder, clm a decoder).

Rules (stated here so the verdicts can be argued with):
- *Emergence time*: the first probe from which the model's frame class (`frames/class`, model
  row: the majority over layers) stays the same until the end, in tokens. A run whose final
  class is "none" has no frame and no emergence time.
- *Claim 1, frames form early*: reproduced when the 95 % t interval (`evidence.mean_interval`)
  of the emergence time as a fraction of the run (runs with a frame) lies entirely below
  `EARLY_FRACTION` (25 %), contradicted when it lies entirely above `LATE_FRACTION` (50 %),
  inconclusive otherwise. The bounds decide, never the mean: a mean below 25 % whose interval
  reaches above it is inconclusive.
- *Claim 2, the position encoding influences the type* (Ruscio et al. show its influence; the
  claim is not that it decides the type alone): within one objective, a setting's class is its
  seeds' majority when at least two thirds of them agree (otherwise "mixed"). Only settings
  whose majority is not "none" count: "none" says whether a frame formed, not its type. Per
  objective with two such settings or more: inconclusive when any is mixed; reproduced when
  their types differ; contradicted when all agree AND they include a relative or no-position
  encoding (rope, alibi, none) and an absolute one (learned, sinusoidal). Frames that agree
  under one family only are not counted: on text at 300 steps only the absolute encodings
  form a frame, and their agreement cannot say that RoPE, ALiBi or NoPE would agree. The claim
  is reproduced when one objective reproduces it, contradicted when every objective that counts
  contradicts it, inconclusive otherwise (also when none counts).
- *Claim 3, bidirectional frames belong to encoders*: both sides count the same unit, the
  setting majority with the same two-thirds agreement. Contradicted when some decoder
  setting's majority is bidirectional; reproduced when some encoder setting's majority is and
  no decoder setting's is; inconclusive otherwise. Runs that end bidirectional without a
  majority in their setting (one or two seeds of 25) decide nothing either way, and encoders
  whose frames are all of another type leave it inconclusive too: no bidirectional frame
  formed anywhere, so where such frames belong cannot be read; calling that a contradiction
  would test a different claim, that encoders form bidirectional frames. The claim's text
  gives the settings' and the runs' counts and the encoder classes beside the verdict.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pandas as pd

from sinklab.analysis import names
from sinklab.analysis.frames import FRAME_CLASSES
from sinklab.reports import evidence, funnelling

EARLY_FRACTION = 0.25
LATE_FRACTION = 0.5
# The continuous frame metrics of the report, averaged over layers (head-averaged maps).
CONTINUOUS = (
    ("star-likeness", "frames/star_likeness"),
    ("in-degree Gini", "frames/indegree_gini"),
    ("Fiedler value", "frames/fiedler"),
    ("participation ratio", "frames/participation_ratio"),
)


def class_name(code: float | None) -> str:
    """`frames/class` code -> its name ("-" when missing)."""
    if code is None or (isinstance(code, float) and math.isnan(code)):
        return "-"
    return FRAME_CLASSES[int(code)]


def frame_emergence(rows: pd.DataFrame) -> tuple[str, float | None, float]:
    """(final class, tokens at which it formed for good, tokens of the last probe).

    Formed for good: the first probe from which the model row of `frames/class` keeps its
    final value to the end. None when the final class is "none" (no frame) or unmeasured."""
    curve = evidence.model_curve(rows, names.FRAME_CLASS)
    if curve.empty:
        return "-", None, math.nan
    codes = curve["value"].to_numpy()
    tokens = curve["tokens_seen"].to_numpy(dtype=float)
    final = codes[-1]
    last = float(tokens[-1])
    if class_name(float(final)) == "none":
        return "none", None, last
    start = len(codes) - 1
    while start > 0 and codes[start - 1] == final:
        start -= 1
    return class_name(float(final)), float(tokens[start]), last


def layer_mean(rows: pd.DataFrame, metric: str) -> float | None:
    """The metric's layer rows (head-averaged maps) at the last step, averaged over layers."""
    last = rows[rows["step"] == rows["step"].max()]
    part = last[(last["metric"] == metric) & (last["head"] == -1) & (last["layer"] >= 0)]
    return float(part["value"].mean()) if len(part) else None


def majority(classes: Sequence[str]) -> str:
    """The class at least two thirds of the seeds share, else "mixed"."""
    if not classes:
        return "-"
    name, count = Counter(classes).most_common(1)[0]
    return name if count * 3 >= 2 * len(classes) else "mixed"


def job_keys(job: Any) -> dict[str, str]:
    """The job's setting by short key ({"variant": "encoder", "pos": "rope"}) from the keys
    its saved overrides gave it (`job.keys`), with `variant` (encoder | decoder) from its saved
    config when the sweep did not vary it (a study with the objective fixed); the swept keys
    alone when there is no readable config."""
    keys = {str(k).rsplit(".", 1)[-1]: str(v) for k, v in job.keys.items()}
    if "variant" in keys or "causal" in keys:
        return keys
    from omegaconf import OmegaConf

    from sinklab.runs.layout import RunLayout

    folder = getattr(job, "folder", None)
    path = RunLayout(folder).hydra_config if folder is not None else None
    if path is None or not path.is_file():
        return keys
    objective = OmegaConf.select(OmegaConf.load(path), "data.objective", default=None)
    if objective in ("mlm", "clm"):
        keys["variant"] = "encoder" if objective == "mlm" else "decoder"
    return keys


def frames_table(jobs: Sequence[Any]) -> pd.DataFrame:
    """One row per setting: final class by seed, the seeds' majority, emergence in k tokens
    and as a share of the run (mean [95 % t interval] over the seeds with a frame), and the
    layer-mean continuous metrics."""
    records = []
    for label in dict.fromkeys(job.label for job in jobs):
        group = [job for job in jobs if job.label == label]
        found = [frame_emergence(job.rows) for job in group]
        classes = [c for c, _, _ in found]
        times = [t for _, t, _ in found if t is not None]
        shares = [t / last for _, t, last in found if t is not None and last > 0]
        record: dict[str, object] = {
            "run": label,
            "class": majority(classes),
            "class by seed": " / ".join(classes),
            "emerged, k tokens": evidence.mean_interval([t / 1e3 for t in times]).text(),
            "emerged, share of run": evidence.mean_interval(shares).text(2),
        }
        for title, metric in CONTINUOUS:
            values = [layer_mean(job.rows, metric) for job in group]
            present = [v for v in values if v is not None]
            record[title] = sum(present) / len(present) if present else None
        records.append(record)
    return pd.DataFrame.from_records(records)


def probe_length(job: Any, default: int = 64) -> int:
    """Tokens per probe window of a job (its saved probe set), `default` when unreadable."""
    from sinklab.data.probe_set import load_probe_set

    try:
        return int(load_probe_set(job.folder).input_ids.shape[1])
    except (OSError, KeyError, ValueError, EOFError):
        return default  # no probe set (or not one sinklab wrote)


def edge_anchors(
    rows: pd.DataFrame, n: int, edge_frac: float = 0.1, ref_threshold: float = 0.1
) -> list[str]:
    """Per layer at the final step, where the head-averaged map's references (the logged
    ranks with r > ref_threshold; the fallback top 10 % of a map without any is not counted)
    sit: "both ends" (one in the first and one in the last `edge_frac` of the n positions),
    "start", "end", "inside" (none at an edge) or "no ref". This reads the anchors directly,
    apart from the classifier's top-two rule."""
    last = rows[(rows["step"] == rows["step"].max()) & (rows["head"] == -1) & (rows["layer"] >= 0)]
    edge = max(1, math.ceil(edge_frac * n))
    out = []
    for layer in sorted(last["layer"].unique()):
        here = last[last["layer"] == layer].set_index("metric")["value"]
        positions = [
            int(here[name])
            for name in here.index
            if name.startswith("frames/ref_position/rank_")
            and here.get(name.replace("ref_position", "ref_mass"), math.inf) > ref_threshold
        ]
        start = any(p < edge for p in positions)
        end = any(p >= n - edge for p in positions)
        if not positions:
            out.append("no ref")
        elif start and end:
            out.append("both ends")
        else:
            out.append("start" if start else ("end" if end else "inside"))
    return out


def anchor_table(jobs: Sequence[Any]) -> pd.DataFrame:
    """Per setting, how its layers' references sit at the final step (counts over seeds and
    layers): the evidence a bidirectional frame needs, read without the top-two rule."""
    records = []
    for label in dict.fromkeys(job.label for job in jobs):
        counts: Counter[str] = Counter()
        for job in (j for j in jobs if j.label == label):
            counts.update(edge_anchors(job.rows, probe_length(job)))
        total = sum(counts.values())
        record: dict[str, object] = {"run": label, "layer maps": total}
        for kind in ("both ends", "start", "end", "inside", "no ref"):
            record[kind] = counts.get(kind, 0)
        records.append(record)
    return pd.DataFrame.from_records(records)


def funnel_table(jobs: Sequence[Any]) -> pd.DataFrame:
    """Pyramidal funnelling per setting at the final step (`reports.funnelling`): lower- and
    upper-half means of the normalised row entropy and the top-column mass (means over seeds),
    each seed's verdict, and the seeds' majority."""
    records = []
    for label in dict.fromkeys(job.label for job in jobs):
        found = [funnelling.funnel(job.rows) for job in jobs if job.label == label]

        def mean(attr: str, found: list[funnelling.Funnel] = found) -> float:
            values = [getattr(f, attr) for f in found if not math.isnan(getattr(f, attr))]
            return sum(values) / len(values) if values else math.nan

        verdicts = [f.verdict for f in found]
        records.append(
            {
                "run": label,
                "entropy lower -> upper": f"{mean('entropy_lower'):.3f} -> "
                f"{mean('entropy_upper'):.3f}",
                "top-column mass lower -> upper": f"{mean('mass_lower'):.3f} -> "
                f"{mean('mass_upper'):.3f}",
                "verdict by seed": " / ".join(verdicts),
                "majority": majority(verdicts),
            }
        )
    return pd.DataFrame.from_records(records)


CLAIM = "claim (Ruscio et al. 2025)"
CLAIM_EARLY = "frames form in the earliest stages of training"
CLAIM_ENCODING = "the position encoding influences the frame type"
CLAIM_BIDIRECTIONAL = "bidirectional frames belong to encoders"
# Claim 2's two families of encodings: a frame type shared across both says the encoding does
# not influence it; agreement within one family cannot say that.
RELATIVE_OR_NONE = frozenset({"rope", "alibi", "none"})
ABSOLUTE = frozenset({"learned", "sinusoidal"})

# One run: its setting's keys and its `frame_emergence` (final class, formed at, last tokens).
Run = tuple[dict[str, str], tuple[str, float | None, float]]


def early_verdict(share: evidence.Interval) -> str:
    """Claim 1 from the t interval of the emergence share, judged by its bounds, never its
    mean: a mean below `EARLY_FRACTION` whose interval reaches above it is not shown early."""
    if share.n < 2 or math.isnan(share.low) or math.isnan(share.high):
        return "inconclusive"
    if share.high < EARLY_FRACTION:
        return "reproduced"
    if share.low > LATE_FRACTION:
        return "contradicted"
    return "inconclusive"


def _emergence_claim(runs: Sequence[Run]) -> dict[str, str]:
    """Claim 1 over every run with a frame, with the objectives' intervals beside it."""
    shares = [t / last for _, (_, t, last) in runs if t is not None and last > 0]
    early = evidence.mean_interval(shares)
    per_objective = []
    for objective in sorted({k.get("variant", "-") for k, _ in runs}):
        part = [
            t / last
            for k, (_, t, last) in runs
            if k.get("variant", "-") == objective and t is not None and last > 0
        ]
        if part:
            per_objective.append(f"{objective} {evidence.mean_interval(part).text(2)}")
    here = f"emergence at {early.text(2)} of the run (95 % t interval, {early.n} runs with a frame)"
    if len(per_objective) > 1:
        here += "; " + ", ".join(per_objective)
    return {CLAIM: CLAIM_EARLY, "here": here, "verdict": early_verdict(early)}


def encoding_verdict(cells: dict[str, str]) -> str | None:
    """Claim 2 within one objective from its settings' classes by encoding (pos -> majority);
    None when the objective cannot speak: fewer than two settings with a frame, or frames that
    agree but formed under one family of encodings only."""
    framed = {pos: cls for pos, cls in cells.items() if cls != "none"}
    if len(framed) < 2:
        return None
    if "mixed" in framed.values():
        return "inconclusive"
    if len(set(framed.values())) > 1:
        return "reproduced"
    if framed.keys() & RELATIVE_OR_NONE and framed.keys() & ABSOLUTE:
        return "contradicted"
    return None


def _one_family_note(cells: dict[str, str]) -> str:
    """The reason an objective whose frames agree is left out of claim 2, or ""."""
    framed = {pos for pos, cls in cells.items() if cls != "none"}
    if len(framed) < 2 or encoding_verdict(cells) is not None:
        return ""
    if framed <= ABSOLUTE:
        return " (frames only with absolute encodings: not counted)"
    if framed <= RELATIVE_OR_NONE:
        return " (frames only with relative or no position encodings: not counted)"
    return " (frames not under both a relative or no and an absolute encoding: not counted)"


def _encoding_claim(majorities: dict[tuple[str, str], str]) -> dict[str, str]:
    """Claim 2 over the objectives that can speak to it."""
    texts, verdicts = [], []
    for objective in sorted({objective for objective, _ in majorities}):
        cells = {pos: cls for (obj, pos), cls in majorities.items() if obj == objective}
        listed = ", ".join(f"{pos} {cls}" for pos, cls in sorted(cells.items()))
        texts.append(f"{objective}: {listed}{_one_family_note(cells)}")
        found = encoding_verdict(cells)
        if found is not None:
            verdicts.append(found)
    if "reproduced" in verdicts:
        verdict = "reproduced"
    elif verdicts and set(verdicts) == {"contradicted"}:
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    return {CLAIM: CLAIM_ENCODING, "here": "; ".join(texts) or "-", "verdict": verdict}


def bidirectional_verdict(majorities: dict[tuple[str, str], str]) -> str:
    """Claim 3 from the settings' majorities ((objective, pos) -> class), the same unit and the
    same two-thirds agreement on both sides: seeds without a majority decide nothing."""
    encoder = any(c == "bidirectional" for (o, _), c in majorities.items() if o == "encoder")
    decoder = any(c == "bidirectional" for (o, _), c in majorities.items() if o == "decoder")
    if decoder:
        return "contradicted"
    return "reproduced" if encoder else "inconclusive"


def _bidirectional_claim(
    runs: Sequence[Run], majorities: dict[tuple[str, str], str]
) -> dict[str, str]:
    """Claim 3 with the settings' and the runs' counts behind it."""

    def count(objective: str) -> tuple[int, int, int]:
        settings = [c for (o, _), c in majorities.items() if o == objective]
        seeds = [cls for keys, (cls, _, _) in runs if keys.get("variant") == objective]
        return settings.count("bidirectional"), len(settings), seeds.count("bidirectional")

    (enc_set, enc_all, enc_runs), (dec_set, dec_all, dec_runs) = count("encoder"), count("decoder")
    encoder_classes = ", ".join(
        f"{pos} {cls}" for (o, pos), cls in sorted(majorities.items()) if o == "encoder"
    )
    decoders = f"{dec_set} of {dec_all} decoder settings" if dec_all else "no decoder settings"
    here = (
        f"bidirectional majority (2/3 of seeds) in {enc_set} of {enc_all} encoder and "
        f"{decoders}; bidirectional final class in {enc_runs} encoder and {dec_runs} decoder "
        f"runs; encoder classes: {encoder_classes or '-'}"
    )
    return {CLAIM: CLAIM_BIDIRECTIONAL, "here": here, "verdict": bidirectional_verdict(majorities)}


def frames_claims(jobs: Sequence[Any]) -> pd.DataFrame:
    """Ruscio et al.'s three claims, each with what the sweep shows and the verdict of the
    rule in the module docstring."""
    runs: list[Run] = [(job_keys(job), frame_emergence(job.rows)) for job in jobs]
    by_setting: dict[tuple[str, str], list[str]] = {}
    for keys, (cls, _, _) in runs:
        objective = keys.get("variant", keys.get("causal", "-"))
        by_setting.setdefault((objective, keys.get("pos", "-")), []).append(cls)
    majorities = {key: majority(classes) for key, classes in by_setting.items()}
    return pd.DataFrame.from_records(
        [
            _emergence_claim(runs),
            _encoding_claim(majorities),
            _bidirectional_claim(runs, majorities),
        ]
    )
