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
- *Claim 1, frames form early*: reproduced when the 95 % bootstrap interval of the emergence
  time as a fraction of the run (runs with a frame) lies below `EARLY_FRACTION` (25 %),
  contradicted when it lies above 50 %, inconclusive otherwise.
- *Claim 2, the position encoding decides the type*: within one objective, a setting's class
  is its seeds' majority when at least two thirds of them agree (otherwise "mixed").
  Only settings whose majority is a frame count: "none" says whether a frame formed, not its
  type. Per objective with two such settings or more: reproduced when their types differ;
  contradicted when every one has a majority and all agree (the type does not depend on the
  encoding); inconclusive when any is mixed. An objective with fewer than two settings with a
  frame is left out. The claim is reproduced when one objective reproduces it, contradicted
  when all that count contradict, inconclusive otherwise.
- *Claim 3, bidirectional frames belong to encoders*: contradicted when a decoder setting's
  majority is bidirectional, or when encoders form frames (some setting's majority is
  centralized or distributed) and none of them is bidirectional; reproduced when some encoder
  setting's majority is bidirectional and no decoder run is; inconclusive otherwise, in
  particular when no encoder formed a frame at all (the question cannot be asked).
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
    and as a share of the run (mean [95 % CI]), and the layer-mean continuous metrics."""
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
            "emerged, k tokens": evidence.bootstrap_mean([t / 1e3 for t in times]).text(),
            "emerged, share of run": evidence.bootstrap_mean(shares).text(2),
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


def frames_claims(jobs: Sequence[Any]) -> pd.DataFrame:
    """Ruscio et al.'s three claims, each with what the sweep shows and the verdict of the
    rule in the module docstring."""
    runs = [(job_keys(job), frame_emergence(job.rows)) for job in jobs]
    shares = [t / last for _, (_, t, last) in runs if t is not None and last > 0]
    early = evidence.bootstrap_mean(shares)
    if early.n < 2:
        v1 = "inconclusive"
    elif early.high < EARLY_FRACTION:
        v1 = "reproduced"
    elif early.low > LATE_FRACTION:
        v1 = "contradicted"
    else:
        v1 = "inconclusive"
    per_objective = []
    for objective in sorted({k.get("variant", "-") for k, _ in runs}):
        part = [
            t / last
            for k, (_, t, last) in runs
            if k.get("variant", "-") == objective and t is not None and last > 0
        ]
        if part:
            per_objective.append(f"{objective} {evidence.bootstrap_mean(part).text(2)}")
    here = f"emergence at {early.text(2)} of the run ({early.n} runs with a frame)"
    if len(per_objective) > 1:
        here += "; " + ", ".join(per_objective)
    rows = [
        {
            "claim (Ruscio et al. 2025)": "frames form in the earliest stages of training",
            "here": here,
            "verdict": v1,
        }
    ]

    by_setting: dict[tuple[str, str], list[str]] = {}
    for keys, (cls, _, _) in runs:
        objective = keys.get("variant", keys.get("causal", "-"))
        by_setting.setdefault((objective, keys.get("pos", "-")), []).append(cls)
    majorities = {key: majority(classes) for key, classes in by_setting.items()}
    objectives = sorted({objective for objective, _ in majorities})
    texts, verdicts = [], []
    for objective in objectives:
        every = {pos: m for (obj, pos), m in majorities.items() if obj == objective}
        texts.append(f"{objective}: " + ", ".join(f"{p} {m}" for p, m in sorted(every.items())))
        cells = {pos: m for pos, m in every.items() if m != "none"}  # settings with a frame
        if len(cells) < 2:  # one type says nothing about what the encoding decides
            continue
        if "mixed" in cells.values():
            verdicts.append("inconclusive")
        else:
            verdicts.append("reproduced" if len(set(cells.values())) > 1 else "contradicted")
    v2 = (
        "reproduced"
        if "reproduced" in verdicts
        else ("contradicted" if verdicts and set(verdicts) == {"contradicted"} else "inconclusive")
    )
    rows.append(
        {
            "claim (Ruscio et al. 2025)": "the position encoding decides the frame type",
            "here": "; ".join(texts) or "-",
            "verdict": v2,
        }
    )

    def bidirectional_runs(objective: str) -> int:
        return sum(
            1
            for keys, (cls, _, _) in runs
            if keys.get("variant") == objective and cls == "bidirectional"
        )

    n_enc, n_dec = bidirectional_runs("encoder"), bidirectional_runs("decoder")
    enc_major = any(m == "bidirectional" for (o, _), m in majorities.items() if o == "encoder")
    dec_major = any(m == "bidirectional" for (o, _), m in majorities.items() if o == "decoder")
    enc_other = any(
        m in ("centralized", "distributed") for (o, _), m in majorities.items() if o == "encoder"
    )
    if dec_major or (enc_other and n_enc == 0):
        v3 = "contradicted"
    elif enc_major and n_dec == 0:
        v3 = "reproduced"
    else:
        v3 = "inconclusive"
    rows.append(
        {
            "claim (Ruscio et al. 2025)": "bidirectional frames belong to encoders",
            "here": f"bidirectional final class in {n_enc} encoder and {n_dec} decoder runs; "
            + "encoder classes: "
            + (
                ", ".join(f"{p} {m}" for (o, p), m in sorted(majorities.items()) if o == "encoder")
                or "-"
            ),
            "verdict": v3,
        }
    )
    return pd.DataFrame.from_records(rows)
