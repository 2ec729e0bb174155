"""Every study of docs/results.md, each declared once: what it runs, what it reports, which
published directions it tests, and what runs after its sweep.

A study is `conf/experiment/<name>.yaml` run as a Hydra multirun into
`outputs/studies/<name>/` (`make study-<name>`, `sinklab.reports.run_study`), then an
optional post-step over its finished jobs, then its report views: the generated sections of
docs/results.md (`sinklab.reports.studies`). `make reproduce` runs the studies marked
`reproduce`, in this order. Every report also has the columns and figures that all studies
share (`studies.FINAL_COLUMNS`, `studies.FIGURE_METRICS`); a view lists only its extras.

To add a study: write its experiment config, add one `Study` here, and put a
`<!-- study:<name> -->` block in docs/results.md (or let the first report append one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sinklab.analysis import names
from sinklab.errors import check_choice
from sinklab.reports import directions
from sinklab.reports.directions import Direction
from sinklab.reports.verdicts import Correlation

# (column title, metric, how to reduce over layers): "model" is the whole-model row (-1),
# "max" / "min" / "first" / "last" a reduction over the layer rows; "@start" reads the first
# probe.
Column = tuple[str, str, str]
# (metric, which curve): "model" (the whole-model row), "last" (the last layer's), "mean".
Curve = tuple[str, str]


@dataclass(frozen=True)
class Table:
    """A further final-step table of exactly these columns (no slots, loss or seeds)."""

    title: str
    columns: tuple[Column, ...]


@dataclass(frozen=True)
class Panels:
    """A stacked figure of several metrics on one x axis: `<stem>.png`, one panel each."""

    stem: str
    title: str
    panels: tuple[Column, ...]


@dataclass(frozen=True)
class Sibling:
    """Analysis rows kept beside the study (`outputs/studies/<folder>/<job>/`), metrics
    under `prefix` renamed to start with `renamed` so they cannot pass for probe rows."""

    folder: str
    prefix: str
    renamed: str


@dataclass(frozen=True)
class View:
    """One generated section of docs/results.md, between `<!-- study:<name> -->` markers."""

    name: str
    columns: tuple[Column, ...] = ()  # final-table columns after the shared ones
    figures: tuple[Curve, ...] = ()  # curves after the shared ones
    tables: tuple[Table, ...] = ()
    panels: Panels | None = None
    frames: bool = False  # the reference-frame tables, claims and funnelling figures
    siblings: tuple[Sibling, ...] = ()
    directions: tuple[Direction, ...] = ()
    # (title, statistic of reports.studies.STATISTICS): per-setting mean [t interval] columns of
    # the robust-summaries table, after the ones every study shows
    statistics: tuple[tuple[str, str], ...] = ()
    correlations: tuple[Correlation, ...] = ()  # rank correlations across the view's runs


@dataclass(frozen=True)
class PostStep:
    """`sinklab-analyze` over every finished job of the sweep, `parallel` at a time with one
    thread each, writing into the sibling folder `out/<job>/`."""

    out: str
    overrides: tuple[str, ...]
    parallel: int = 2
    seconds_per_job: float = 0.0  # for `make reproduce`'s estimate

    def command(self, job: str) -> list[str]:
        """The analyze arguments for one job, run from inside the study folder."""
        # Job folders are named after their overrides (`3_seed=1,variant=relu`): quoted, so
        # Hydra reads the whole folder name as one value.
        return [f'target="./{job}"', *self.overrides, f'out_dir="../{self.out}/{job}"']


@dataclass(frozen=True)
class Study:
    """One study: a sweep (`conf/experiment/<name>.yaml`), its post-step, its report views."""

    name: str
    views: tuple[View, ...] = ()
    post_step: PostStep | None = None
    reproduce: bool = True  # run by `make reproduce`
    summary: str = field(default="", compare=False)  # what it asks, for `run_study --list`

    def __post_init__(self) -> None:
        if not self.views:
            object.__setattr__(self, "views", (View(self.name),))

    @property
    def experiment(self) -> str:
        """The Hydra experiment this study runs (`experiment=<name>`)."""
        return self.name

    def experiment_file(self) -> Path:
        from sinklab.configs import CONF_DIR

        return Path(CONF_DIR) / "experiment" / f"{self.experiment}.yaml"

    def folders(self) -> tuple[str, ...]:
        """The folders under outputs/studies/ that one run of the study writes."""
        return (self.name,) + ((self.post_step.out,) if self.post_step else ())


_DORMANCY_COLUMNS: tuple[Column, ...] = (
    ("BOS attn non-trigger", names.BOS_ATTN_NONTRIGGER, "model"),
    ("BOS attn trigger", names.BOS_ATTN_TRIGGER, "model"),
    ("BOS resid ratio at step 0 (last layer)", names.RESID_PEAK, "last@start"),
    ("BOS resid norm (last layer)", names.BOS_RESID_NORM, "last"),
    ("BOS resid norm at step 0", names.BOS_RESID_NORM, "last@start"),
)
_DORMANCY_FIGURES: tuple[Curve, ...] = (
    (names.VALUE_DRAIN, "model"),
    (names.RESID_PEAK, "last"),
    (names.BOS_RESID_NORM, "last"),
    (names.BOS_ATTN_NONTRIGGER, "model"),
    (names.BOS_ATTN_TRIGGER, "model"),
)


def _dormancy_view(name: str, found: tuple[Direction, ...] = ()) -> View:
    """Guo et al.'s dormant-head measures: BOS attention by query type, and the residual-state
    peak both as Guo et al. give it (the absolute BOS norm) and against its step-0 value."""
    return View(name, columns=_DORMANCY_COLUMNS, figures=_DORMANCY_FIGURES, directions=found)


def _frames_view(name: str) -> View:
    """The reference-frame table, Ruscio et al.'s claims and the funnelling figures."""
    return View(
        name,
        panels=Panels(
            f"{name}_frame_metrics",
            f"{name}: the frame metrics over training (layer means)",
            (
                ("star-likeness", "frames/star_likeness", "mean"),
                ("in-degree Gini", "frames/indegree_gini", "mean"),
                ("Fiedler value", "frames/fiedler", "mean"),
                ("participation ratio", "frames/participation_ratio", "mean"),
            ),
        ),
        frames=True,
    )


_PREFIXES = (("bos", "BOS"), ("prefixquant", "PQ"), ("cushioncache", "CC"))
# attention_sweep's post-step: the final checkpoints again at 4 bits, with each prefixed sink.
_W4 = PostStep(
    out="attention_sweep_w4",
    overrides=(
        "steps=last",
        "groups=[sinks]",
        "quant.enabled=true",
        "quant.quantizer.bits=4",
        "quant.prefix.prefixes=[bos,prefixquant,cushioncache]",
    ),
    parallel=2,
    # two 1-thread processes: 17 s for a pair on a loaded VM
    seconds_per_job=5.0,
)

_STREAMING = View(
    "streaming_sweep",
    columns=(
        ("PPL recompute", "stream/ppl/recompute", "model"),
        ("R dense", "stream/ratio/dense", "model"),
        ("R_win shift", "stream/ratio/window_shift", "model"),
        ("R_win no shift", "stream/ratio/window", "model"),
        ("R_1 shift", "stream/ratio/sinks1_shift", "model"),
        ("R_4 shift", "stream/ratio/sinks4_shift", "model"),
        ("R_4 no shift", "stream/ratio/sinks4", "model"),
        ("R_8 shift", "stream/ratio/sinks8_shift", "model"),
    ),
    figures=(
        ("stream/ratio/window_shift", "model"),
        ("stream/ratio/window", "model"),
        ("stream/ratio/sinks4_shift", "model"),
    ),
    directions=directions.STREAMING_SWEEP,
    statistics=(("PPL(window) / PPL(BOS + recent)", "bos_eviction_cost"),),
    correlations=(
        Correlation(
            "bos_eviction_cost",
            "final_ftm",
            "Does evicting BOS cost more where the sink is stronger",
        ),
    ),
)

_QUANT = View(
    "quant_sweep",
    columns=(
        ("PPL FP", "quant/ppl/fp", "model"),
        ("W8A8 per-tensor static", "quant/ppl/per_tensor_static", "model"),
        ("W8A8 per-tensor dynamic", "quant/ppl/per_tensor_dynamic", "model"),
        ("W8A8 per-token", "quant/ppl/per_token_dynamic", "model"),
        ("max |x| block output", "outliers/resid_post/max_abs", "model"),
        ("kurtosis block output (max layer)", "outliers/resid_post/kurtosis_mean", "max"),
        (
            "down_proj input top-1/median (max layer)",
            "outliers/down_in/token_max_over_median",
            "max",
        ),
    ),
    tables=(
        Table(
            "Prefixed sinks on the final checkpoints, W8A8 per-tensor static (len: prefix "
            "tokens, BOS included; FP change: the FP + prefix control minus FP, the prefix's "
            "own effect; static: the W8A8 perplexity with the prefix; max |x|: the largest "
            "input of a quantised linear over the tokens after the prefix)",
            tuple(
                col
                for prefix, label in _PREFIXES
                for col in (
                    (f"{label} len", f"quant/prefix/{prefix}/len", "model"),
                    (f"{label} FP change", f"quant/prefix/{prefix}/ppl_fp_change", "model"),
                    (f"{label} static", f"quant/prefix/{prefix}/ppl/per_tensor_static", "model"),
                    (f"{label} max |x|", f"quant/prefix/{prefix}/max_act", "model"),
                )
            ),
        ),
        Table(
            "The same final checkpoints at 4 bits (W4A4: weights per channel, activations in "
            "each mode; perplexity increase over FP, and with each prefix over its FP + prefix "
            "control)",
            (
                ("max |x| quantised inputs", "quant_w4/max_act", "model"),
                ("static +", "quant_w4/ppl_increase/per_tensor_static", "model"),
                ("dynamic +", "quant_w4/ppl_increase/per_tensor_dynamic", "model"),
                ("per-token +", "quant_w4/ppl_increase/per_token_dynamic", "model"),
            )
            + tuple(
                col
                for prefix, label in _PREFIXES
                for col in (
                    (f"{label} len", f"quant_w4/prefix/{prefix}/len", "model"),
                    (
                        f"{label} static +",
                        f"quant_w4/prefix/{prefix}/ppl_increase/per_tensor_static",
                        "model",
                    ),
                )
            ),
        ),
    ),
    panels=Panels(
        "quant_sweep_outliers_vs_sink",
        "quant_sweep: do the outliers and the int8 damage arrive with the sink?",
        (
            ("Sink_1 %", names.SINK1, "model"),
            ("first-token mass", names.FIRST_TOKEN_MASS, "model"),
            ("max |x| block out", "outliers/resid_post/max_abs", "model"),
            ("kurtosis (last layer)", "outliers/resid_post/kurtosis_mean", "last"),
            ("W8A8 static PPL +", "quant/ppl_increase/per_tensor_static", "model"),
        ),
    ),
    siblings=(Sibling(_W4.out, "quant/", "quant_w4/"),),
    directions=directions.QUANT_SWEEP,
)


def _catalog(*studies: Study) -> dict[str, Study]:
    return {study.name: study for study in studies}


# In `make reproduce`'s order.
STUDIES: dict[str, Study] = _catalog(
    Study(
        "bb_dynamics",
        (_dormancy_view("bb_dynamics", directions.BB_DYNAMICS),),
        summary="Guo et al.'s dormant heads on Bigram-Backcopy: AdamW vs SGD, softmax vs ReLU",
    ),
    Study(
        "bb_long",
        (_dormancy_view("bb_long", directions.BB_LONG),),
        reproduce=False,
        summary="bb_dynamics for Guo et al.'s 10k steps (one seed)",
    ),
    Study(
        "sigmoid_bos_sweep",
        (View("sigmoid_bos_sweep", directions=directions.SIGMOID_BOS_SWEEP),),
        summary="sigmoid vs softmax attention, with and without BOS",
    ),
    Study(
        "sigmoid_bos_text_sweep",
        (View("sigmoid_bos_text_sweep", directions=directions.SIGMOID_BOS_TEXT_SWEEP),),
        summary="sigmoid_bos_sweep on real text",
    ),
    Study(
        "pos_sweep",
        (
            View(
                "pos_sweep",
                directions=directions.POS_SWEEP,
                statistics=(("final val loss", "val_loss"),),
            ),
        ),
        summary="the position encodings: RoPE, ALiBi, learned, sinusoidal, none",
    ),
    Study(
        "alibi_long",
        reproduce=False,
        summary="RoPE and ALiBi for 2000 steps",
    ),
    Study(
        # One sweep of the attention variants measures the sink scores, the streaming grid and
        # the outliers/W8A8 at every probe, and three sections read it (one set of runs
        # instead of three sweeps of the same variants).
        "attention_sweep",
        (
            View(
                "attention_sweep",
                columns=(
                    ("Sink_1 % layer 0", names.SINK1, "first"),
                    ("Sink_1 % last layer", names.SINK1, "last"),
                ),
                directions=directions.ATTENTION_SWEEP,
            ),
            _STREAMING,
            _QUANT,
        ),
        post_step=_W4,
        summary="the attention variants, with the streaming grid, W8A8 at every probe and "
        "W4A4 with prefixed sinks on the final checkpoints",
    ),
    Study(
        "min_context_sweep",
        (
            View(
                "min_context_sweep",
                directions=directions.MIN_CONTEXT_SWEEP,
                statistics=(
                    ("sink ratio AUC, all queries", "sink_ratio_auc"),
                    ("sink ratio AUC, t >= 32", "sink_ratio_auc_supervised"),
                    ("first-token-mass AUC, t >= 32", "ftm_auc_supervised"),
                ),
            ),
        ),
        summary="no loss on queries with fewer than min_context tokens of context",
    ),
    Study(
        "weight_decay_sweep",
        (View("weight_decay_sweep", directions=directions.WEIGHT_DECAY_SWEEP),),
        summary="weight decay 0 to 2",
    ),
    Study(
        "norm_sweep",
        (View("norm_sweep", directions=directions.NORM_SWEEP),),
        summary="pre or post, RMSNorm or LayerNorm, QK-norm",
    ),
    Study("mlp_sweep", summary="SwiGLU, GELU, ReLU, no MLP"),
    Study("heads_sweep", summary="1, 2, 4 or 8 heads"),
    Study(
        "first_token_sweep",
        (View("first_token_sweep", directions=directions.FIRST_TOKEN_SWEEP),),
        summary="the first token on real text: natural, random, fixed BOS",
    ),
    Study(
        "frames_sweep",
        (_frames_view("frames_sweep"),),
        summary="Ruscio et al.'s reference frames: decoders and encoders, five encodings",
    ),
    Study(
        "frames_text_sweep",
        (_frames_view("frames_text_sweep"),),
        summary="frames_sweep on real text",
    ),
    Study(
        "frames_end_token_sweep",
        (_frames_view("frames_end_token_sweep"),),
        summary="frames_sweep's encoders with an end token in every window",
    ),
)


def reproduced() -> tuple[str, ...]:
    """The studies `make reproduce` runs, in order."""
    return tuple(name for name, study in STUDIES.items() if study.reproduce)


def views() -> dict[str, tuple[Study, View]]:
    """Every report section by name, with the study whose runs it reads."""
    return {view.name: (study, view) for study in STUDIES.values() for view in study.views}


def study(name: str) -> Study:
    """The study named `name`, or the study whose runs a report view named `name` reads
    (`streaming_sweep` -> attention_sweep); a one-line ConfigError otherwise."""
    if name in STUDIES:
        return STUDIES[name]
    found = views()
    check_choice("study", name, [*STUDIES, *(v for v in found if v not in STUDIES)])
    return found[name][0]


def view(section: str) -> View:
    """The report view `section`; a view without extras for a section nobody declared (a
    sweep folder of an experiment that is not a study)."""
    found = views().get(section)
    return found[1] if found else View(section)
