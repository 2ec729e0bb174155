"""The questions table of docs/results.md and the README's results paragraph, generated.

Both are rendered from the committed evidence of every view (docs/evidence/<view>.json, written
by each study report), with the same verdict code as the sections themselves
(`verdicts.judge`), between markers:
`<!-- summary -->` in docs/results.md and `<!-- results -->` in README.md. What is declared here
is only the question, the published answer (the papers' figures), and which verdict rows and
statistics answer it; every number in the "here" column comes from the evidence. A view that
has no evidence file yet says so, with the command that makes it.

    python scripts/study_report.py --summary       # re-render both from docs/evidence/
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sinklab.reports import study_catalog, verdicts
from sinklab.reports.frames_study import CLAIM
from sinklab.reports.markdown import escape_cell
from sinklab.reports.verdicts import UNTESTABLE, Evidence, Verdict, correlation_text, judge

SUMMARY_MARK = "summary"
README_MARK = "results"


@dataclass(frozen=True)
class Question:
    """One row of the questions table: the verdict rows of `views` whose setting is in
    `settings` (all when empty), and per-setting means of `statistics` ((view, title, key))."""

    text: str
    published: str
    views: tuple[str, ...]
    settings: tuple[str, ...] = ()
    statistics: tuple[tuple[str, str, str], ...] = ()
    note: str = ""  # a confound the numbers alone do not show (words, no figures)


QUESTIONS: tuple[Question, ...] = (
    Question(
        "Does the sink emerge for every position encoding, NoPE included?",
        "yes; learned 33.1, NoPE 20.4, ALiBi 20.8 against RoPE 18.2 % (Gu et al.)",
        ("pos_sweep",),
        statistics=(
            ("pos_sweep", "seeds with a lasting sink", "sink_reached"),
            ("pos_sweep", "final validation loss", "val_loss"),
        ),
        note="an encoding with a higher validation loss is also less trained at 300 steps, so "
        "a larger AUC there may be under-training, not the encoding",
    ),
    Question(
        "Does sigmoid attention without normalisation stay sink-free?",
        "yes, 0.44 %* (Gu et al., trained without BOS)",
        ("sigmoid_bos_sweep", "sigmoid_bos_text_sweep", "attention_sweep"),
        settings=(
            "variant=sigmoid",
            "variant=sigmoid,bos=none",
            "variant=sigmoid,bos=every_window",
        ),
        statistics=(
            ("sigmoid_bos_sweep", "seeds with a lasting sink", "sink_reached"),
            ("sigmoid_bos_text_sweep", "seeds with a lasting sink", "sink_reached"),
        ),
    ),
    Question(
        "Do sink tokens, sink logits and the kv bias move the sink off position 0?",
        "yes, onto the slot (sink token 0.00 %, kv bias 0.04 % on token 0; Gu et al.)",
        ("attention_sweep",),
        settings=("variant=sink_token", "variant=kv_bias", "variant=sink_logit"),
    ),
    Question(
        "Does gating lower the sink?",
        "yes: per head 6.4 %, per channel 4.5 % against 46.0 % (the Spike paper)",
        ("attention_sweep",),
        settings=("variant=gated_head", "variant=gated_channel"),
    ),
    Question(
        "Does minimum-context masking lower the sink ratio?",
        "yes: 46.0 -> 13.0 -> 1.2 % at a minimum context of 1, 1024, 2048 of 4096 (the Spike "
        "paper, 7B)",
        ("min_context_sweep",),
        statistics=(
            ("min_context_sweep", "sink ratio AUC, all queries", "sink_ratio_auc"),
            ("min_context_sweep", "sink ratio AUC, t >= 32", "sink_ratio_auc_supervised"),
        ),
    ),
    Question(
        "How does weight decay move the sink?",
        "non-monotone: 18.2 % at 0.1, 41.1 % at 0.5, 6.1 % at 2.0 (Gu et al.)",
        ("weight_decay_sweep",),
        statistics=(("weight_decay_sweep", "time to sink, M tokens", "time_to_sink_M"),),
    ),
    Question(
        "Does post-norm weaken the sink?",
        "yes, 13.5 against 18.2 % (Gu et al.)",
        ("norm_sweep",),
    ),
    Question(
        "Does a random first token strengthen the sink?",
        "yes, 27.0 against 18.2 % (Gu et al.)",
        ("first_token_sweep",),
    ),
    Question(
        "Does the head count move the sink?",
        "Gu et al. (fixed width): little effect, 1/2/4/8 heads 19.50 / 12.95 / 10.68 / 18.18 %; "
        "the Spike paper: it rises with head dimension, 8 -> 128: 4.1 -> 46.0 %",
        ("heads_sweep",),
        statistics=(
            ("heads_sweep", "seeds with a lasting sink", "sink_reached"),
            ("heads_sweep", "time to sink, M tokens", "time_to_sink_M"),
        ),
        note="at a fixed width more heads are smaller heads, so head count and head dimension "
        "cannot be told apart here",
    ),
    Question(
        "Do SGD and ReLU attention weaken the dormant heads' BOS sink (Guo et al.)?",
        "yes",
        ("bb_dynamics", "bb_long"),
    ),
    Question(
        "Do frames form early, does the position encoding influence their type, are "
        "bidirectional frames the encoders' (Ruscio et al.)?",
        "yes, yes, yes",
        ("frames_sweep", "frames_text_sweep", "frames_end_token_sweep"),
    ),
    Question(
        "Do gating and clipped softmax prevent the outliers that break int8 (Bondarenko et al.)?",
        "gating yes (max inf-norm 340 -> 8.7, W8A8 PPL 21.18 -> 16.02); clipped softmax not on OPT",
        ("quant_sweep",),
    ),
    Question(
        "Which models need their first token in a bounded KV cache (StreamingLLM)?",
        "evicting the first tokens collapses perplexity; a model pretrained with one sink token "
        "needs only that one (Xiao et al.)",
        ("streaming_sweep",),
        statistics=(("streaming_sweep", "PPL(window) / PPL(BOS + recent)", "bos_eviction_cost"),),
    ),
)


def load_evidence(docs: Path) -> dict[str, Evidence]:
    """Every view's committed evidence, by view name."""
    folder = Path(docs) / "evidence"
    return {p.stem: Evidence.load(p) for p in sorted(folder.glob("*.json"))}


def view_verdicts(found: dict[str, Evidence]) -> dict[str, list[Verdict]]:
    """Each view with evidence, judged with its catalogue directions."""
    catalog = study_catalog.views()
    return {
        name: judge(ev, catalog[name][1].directions)
        for name, ev in found.items()
        if name in catalog
    }


def _short(v: Verdict) -> str:
    d = v.direction
    return (
        f"{d.setting} vs {d.baseline} ({d.statistic}): **{v.verdict}**" + v.text()[len(v.verdict) :]
    )


def _statistic_text(ev: Evidence, title: str, key: str) -> str:
    parts = [
        f"{label} {verdicts.statistic_text(ev, label, key)}"
        for label in ev.labels()
        if ev.by_seed(label, key)
    ]
    return f"{title}: " + ", ".join(parts)


def answer(q: Question, found: dict[str, Evidence], judged: dict[str, list[Verdict]]) -> str:
    """The "here" cell of one question: its statistics, then its verdict rows."""
    parts = []
    for view, title, key in q.statistics:
        if view in found:
            parts.append(_statistic_text(found[view], title, key))
    for view in q.views:
        if view not in found:
            study = study_catalog.study(view).name
            parts.append(f"{view}: not measured under these rules yet (`make study-{study}`)")
            continue
        rows = [
            v for v in judged.get(view, []) if not q.settings or v.direction.setting in q.settings
        ]
        parts += [f"{view}: {_short(v)}" for v in rows]
        parts += [f"{view}: {c[CLAIM]}: **{c['verdict']}**" for c in found[view].claims]
        parts += [
            f"{view}: {correlation_text(found[view], corr)}"
            for corr in study_catalog.view(view).correlations
        ]
    if q.note:
        parts.append(f"note: {q.note}")
    return "; ".join(parts) if parts else "no verdict rows"


def summary_markdown(docs: Path) -> str:
    """The questions table, from docs/evidence/."""
    found = load_evidence(docs)
    judged = view_verdicts(found)
    lines = [
        "| question | published | here (mean [95 % t interval] over seeds; verdicts Holm-corrected "
        "within each section) |",
        "|---|---|---|",
    ]
    for q in QUESTIONS:
        cells = (q.text, q.published, answer(q, found, judged))
        lines.append("| " + " | ".join(escape_cell(c) for c in cells) + " |")
    return "\n".join(lines)


def readme_markdown(docs: Path) -> str:
    """The README's results paragraph: how many verdicts say what, and which."""
    found = load_evidence(docs)
    judged = view_verdicts(found)
    rows = [v for name in sorted(judged) for v in judged[name]]
    counts = Counter(v.verdict for v in rows)
    missing = sorted(
        name
        for name, (_, view) in study_catalog.views().items()
        if view.directions and name not in found
    )
    order = ("reproduced", "contradicted", "inconclusive", UNTESTABLE)
    flipped = sum(v.raw != v.verdict for v in rows)
    lines = [
        f"{len(rows)} verdict rows over {len(judged)} report sections "
        f"({', '.join(f'{counts[k]} {k}' for k in order)}; 95 % t intervals over seeds, "
        f"Holm-corrected within each section, which turns {flipped} raw verdicts inconclusive; "
        "generated from `docs/evidence/`):",
        "",
    ]
    for kind in ("reproduced", "contradicted"):
        chosen = [v for v in rows if v.verdict == kind]
        if chosen:
            lines.append(
                f"- **{kind.capitalize()}:** " + "; ".join(_claim(v) for v in chosen) + "."
            )
    if missing:
        lines.append(
            "- **Not yet measured under these rules:** "
            + ", ".join(f"`{name}`" for name in missing)
            + " (run `make reproduce`)."
        )
    return "\n".join(lines)


def _claim(v: Verdict) -> str:
    d = v.direction
    assert v.difference is not None
    return f"{d.claim} ({d.setting} vs {d.baseline}, {d.statistic} {v.difference.text()})"


def replace_between(text: str, mark: str, body: str) -> str:
    """`text` with the block between `<!-- mark -->` and `<!-- /mark -->` replaced by `body`;
    a ValueError naming the markers when they are missing."""
    start, end = f"<!-- {mark} -->", f"<!-- /{mark} -->"
    if start not in text or end not in text:
        raise ValueError(f"the markers {start} ... {end} are missing")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body.strip()}\n{end}{tail}"


def between(text: str, mark: str) -> str:
    """The block between the markers, stripped (what a test compares)."""
    start, end = f"<!-- {mark} -->", f"<!-- /{mark} -->"
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def write_summaries(docs: Path, readme: Path | None) -> list[Path]:
    """Re-render the questions table and, when `readme` exists, its results paragraph."""
    written = []
    targets: Sequence[tuple[Path | None, str, str]] = (
        (Path(docs) / "results.md", SUMMARY_MARK, summary_markdown(docs)),
        (readme, README_MARK, readme_markdown(docs)),
    )
    for path, mark, body in targets:
        if path is None or not path.exists():
            continue
        text = path.read_text()
        if f"<!-- {mark} -->" not in text:
            continue
        path.write_text(replace_between(text, mark, body))
        written.append(path)
    return written
