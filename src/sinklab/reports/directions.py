"""The published directions each study tests, with their sources, and when a study cannot test one.

A direction compares one setting of a sweep with its baseline on a robust statistic
(`evidence.py`, registered in `reports.studies.STATISTICS`): `ftm_auc` (time-averaged
first-token mass), `sink_ratio_auc` (the same for the Spike paper's sink ratio), `time_to_sink`
(tokens until Sink_1 stays above 10 %), `bos_eviction_cost` (PPL with a window alone over PPL
with BOS kept plus the same recent tokens), quantisation and outlier statistics. Labels are the
study report's job labels (`pos=alibi`, `variant=sigmoid`, `min_context=64`, ...), matched whole
against each job's label, never parsed. Each tuple is named after the report view that tests
it; the study catalogue (`study_catalog.py`) attaches it to that view.

**Untestable here.** A verdict needs something to contrast with and a metric that can see the
mechanism. So beside each direction stands:
- `paper_metric`: what the paper measured, so a reader sees when ours is a stand-in;
- `control`: what a control setting must show first. For "X removes / weakens / strengthens the
  sink" that is a sink in the baseline (Sink_1 > 10 % for 3 probes, in at least 60 % of its
  seeds): without one there is no effect to remove or compare, and any difference is a floor
  effect;
- `blind`: why the statistic cannot see the published mechanism in this study at all.
A direction whose control fails, or that is blind, or that has fewer than two seeds a side, gets
the verdict **untestable here**, with the reason, instead of reproduced / contradicted /
inconclusive.
Figures quoted are Sink_1 at the end of the papers' runs (docs/metrics.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Control:
    """What the `label` runs must show before the direction can be judged: `statistic` (a key of
    reports.studies.STATISTICS) at least `threshold` in at least `share` of their seeds. Counted
    seed by seed, like "the sink formed", because a mean over five seeds can hide that most
    of them show nothing (or, with one wild seed, that all of them do)."""

    label: str
    statistic: str
    threshold: float
    shows: str  # what one seed must show, in words ("a lasting sink")
    share: float = 0.6


@dataclass(frozen=True)
class Direction:
    setting: str
    baseline: str
    statistic: str  # a key of reports.studies.STATISTICS
    sign: int  # +1: setting > baseline; -1: setting < baseline
    claim: str  # the published direction, in words, with its figures and source
    paper_metric: str = "Sink_1 at the end of training"
    control: Control | None = None
    blind: str = ""  # non-empty: why this statistic cannot see the mechanism here


def sinks(label: str) -> Control:
    """The control for "X removes / weakens the sink": `label` must have one to remove."""
    return Control(label, "sink_reached", 1.0, "a lasting sink")


def _weakens(setting: str, baseline: str, statistic: str, claim: str, **kw) -> Direction:
    """`setting` lowers `statistic` against a `baseline` that must itself have a sink."""
    return Direction(setting, baseline, statistic, -1, claim, control=sinks(baseline), **kw)


_GU = "Gu et al. 2025"
_GU_METRIC = "Sink_1 (eps 0.3) at the end of training; ours: the first-token-mass AUC"
_XIAO = "Xiao et al. 2024 (StreamingLLM)"
_XIAO_METRIC = "PPL with a window alone against the first tokens plus the window"
_BONDARENKO = "Bondarenko et al. 2023, OPT-125m"
_SPIKE = "the Spike paper"
_SPIKE_METRIC = "the sink ratio (eps 0.3, keys k <= T/2) at the end of training"

# The control a streaming direction needs: softmax must pay for evicting BOS at all.
_SOFTMAX_PAYS = Control(
    "variant=softmax", "bos_eviction_cost", 1.1, "evicting BOS costs at least x1.1"
)
_ORACLE_BLIND = (
    "R_win is the window's PPL over the recompute oracle's, and the oracle re-encodes each "
    "query from its last C tokens without BOS: both caches lack BOS, so R_win cannot see a "
    "model's need for it (bos_eviction_cost can)"
)


def _int8_damage(statistic: str, bits: int) -> Control:
    return Control(
        "variant=softmax",
        statistic,
        0.05,
        f"a W{bits}A{bits} per-tensor static perplexity increase of at least 0.05",
    )


def _fewer_outliers(variant: str, statistic: str, claim: str, **kw) -> Direction:
    return Direction(f"variant={variant}", "variant=softmax", statistic, -1, claim, **kw)


_MAX_INF = "max inf-norm of the block outputs"
QUANT_SWEEP: tuple[Direction, ...] = (
    _fewer_outliers(
        "gated_head",
        "max_act",
        f"gated attention shrinks the largest activation (max inf-norm 340 -> 8.7, {_BONDARENKO})",
        paper_metric=_MAX_INF,
    ),
    _fewer_outliers(
        "gated_head",
        "w8a8_static",
        f"gated attention shrinks the W8A8 damage (PPL 21.18 -> 16.02, FP 15.84, {_BONDARENKO})",
        paper_metric="W8A8 perplexity",
        control=_int8_damage("w8a8_static", 8),
    ),
    _fewer_outliers(
        "gated_head",
        "w4a4_static",
        f"gated attention shrinks the per-tensor quantisation damage (at 4 bits here; {_BONDARENKO} at 8)",
        paper_metric="W8A8 perplexity",
        control=_int8_damage("w4a4_static", 4),
    ),
    _fewer_outliers(
        "gated_channel",
        "w4a4_static",
        "per-channel gating shrinks the per-tensor quantisation damage (at 4 bits here)",
        paper_metric="W8A8 perplexity",
        control=_int8_damage("w4a4_static", 4),
    ),
    _fewer_outliers(
        "clipped_softmax",
        "w4a4_static",
        "clipped softmax shrinks the per-tensor quantisation damage (BERT; not on OPT, "
        f"{_BONDARENKO})",
        paper_metric="W8A8 perplexity",
        control=_int8_damage("w4a4_static", 4),
    ),
    _fewer_outliers(
        "gated_channel",
        "max_act",
        "per-channel gating shrinks the largest activation (1053 -> 94, Qiu et al. 2025)",
        paper_metric=_MAX_INF,
    ),
    _fewer_outliers(
        "clipped_softmax",
        "max_act",
        "clipped softmax shrinks the largest activation (BERT; on OPT it did not help, "
        f"{_BONDARENKO})",
        paper_metric=_MAX_INF,
    ),
    _fewer_outliers(
        "sink_token",
        "max_act",
        "a sink in front takes the outliers off the text tokens (CushionCache, PrefixQuant)",
        paper_metric="the outlier tokens' activations with an inference-time prefix, "
        "pretrained models",
        blind="softmax's largest activation is not on BOS here (its position changes from "
        "window to window), so there is no first-token outlier for a sink token to take over; "
        "and the papers add prefixes to pretrained models at inference, not in training",
    ),
)


def _evicting_bos(variant: str, claim: str, statistic: str = "bos_eviction_cost") -> Direction:
    """`variant` pays less than softmax for evicting BOS from a bounded cache."""
    if statistic == "r_win":
        return Direction(
            f"variant={variant}",
            "variant=softmax",
            "r_win",
            -1,
            claim,
            paper_metric=_XIAO_METRIC,
            blind=_ORACLE_BLIND,
        )
    return Direction(
        f"variant={variant}",
        "variant=softmax",
        statistic,
        -1,
        claim,
        paper_metric=_XIAO_METRIC,
        control=_SOFTMAX_PAYS,
    )


_STREAM_CLAIMS = (
    (
        "sink_token",
        f"a model pretrained with a learnable sink token needs only that token in the cache "
        f"(160M model; {_XIAO})",
    ),
    (
        "kv_bias",
        f"a key/value bias takes the sink off token 0 (0.04 %, {_GU}), so evicting token 0 "
        f"should cost less (our extrapolation; {_XIAO} did not test it)",
    ),
    (
        "sink_logit",
        "a per-head sink logit lets heads attend to nothing (gpt-oss uses it with sliding-window "
        f"attention; our extrapolation, {_XIAO} did not test it)",
    ),
    (
        "off_by_one",
        "softmax off by one lets heads attend to nothing (Miller 2023's proposal; "
        f"{_XIAO}'s zero-sink model still needed its first tokens)",
    ),
    ("gated_head", "per-head output gating removes the need for a sink (Qiu et al. 2025)"),
    ("gated_channel", "per-channel output gating removes the need for a sink (Qiu et al. 2025)"),
)
STREAMING_SWEEP: tuple[Direction, ...] = tuple(
    _evicting_bos(variant, claim, statistic)
    for statistic in ("bos_eviction_cost", "r_win")
    for variant, claim in _STREAM_CLAIMS
)

POS_SWEEP: tuple[Direction, ...] = (
    Direction(
        "pos=learned",
        "pos=rope",
        "ftm_auc",
        +1,
        f"learned > RoPE (33.1 vs 18.2 %, {_GU})",
        paper_metric=_GU_METRIC,
        control=sinks("pos=rope"),
    ),
    Direction(
        "pos=none",
        "pos=rope",
        "ftm_auc",
        +1,
        f"NoPE > RoPE (20.4 vs 18.2 %, {_GU})",
        paper_metric=_GU_METRIC,
        control=sinks("pos=rope"),
    ),
    Direction(
        "pos=alibi",
        "pos=rope",
        "ftm_auc",
        +1,
        f"ALiBi > RoPE (20.8 vs 18.2 %, {_GU})",
        paper_metric=_GU_METRIC,
        control=sinks("pos=rope"),
    ),
)

ATTENTION_SWEEP: tuple[Direction, ...] = tuple(
    _weakens(f"variant={variant}", "variant=softmax", "ftm_auc", claim, paper_metric=metric)
    for variant, claim, metric in (
        (
            "sigmoid",
            f"sigmoid without normalisation removes the sink (0.44* vs 18.2 %, {_GU}, "
            "trained without BOS; here with BOS)",
            _GU_METRIC,
        ),
        (
            "sink_token",
            f"a learnable sink token moves the sink off token 0 (0.00 %, {_GU})",
            _GU_METRIC,
        ),
        ("kv_bias", f"a key/value bias moves the sink off token 0 (0.04 %, {_GU})", _GU_METRIC),
        (
            "gated_head",
            f"per-head output gating shrinks the sink (6.4 vs 46.0 %, {_SPIKE})",
            _SPIKE_METRIC,
        ),
        (
            "gated_channel",
            f"per-channel output gating shrinks the sink (4.5 vs 46.0 %, {_SPIKE})",
            _SPIKE_METRIC,
        ),
        (
            "sink_logit",
            "a per-head sink logit lets heads attend to nothing (gpt-oss)",
            "none published",
        ),
    )
)

# The Spike paper's 7B runs, context min/max -> sink ratio: 1/4096 46.0 %, 1024/4096 13.0 %,
# 2048/4096 1.2 % (docs/metrics.md). Our T = 64: T/4 = 16, T/2 = 32. The paper's metric is the
# sink ratio; the supervised rows measure it only on the queries that get a loss in every
# setting (t >= 32, `callbacks.probe.metrics.query_start` in min_context_sweep.yaml).
MIN_CONTEXT_SWEEP: tuple[Direction, ...] = tuple(
    _weakens(
        f"min_context={n}",
        "min_context=0",
        statistic,
        f"a minimum context of T/{frac} {verb} the sink (sink ratio {paper} vs 46.0 %, "
        f"{_SPIKE}){where}",
        paper_metric=_SPIKE_METRIC,
    )
    for statistic, where in (
        ("sink_ratio_auc_supervised", "; queries t >= 32"),
        ("sink_ratio_auc", "; all queries"),
    )
    for n, frac, verb, paper in ((32, 2, "removes", "1.2"), (16, 4, "weakens", "13.0"))
)

WEIGHT_DECAY_SWEEP: tuple[Direction, ...] = (
    Direction(
        "weight_decay=0.5",
        "weight_decay=0.1",
        "ftm_auc",
        +1,
        f"weight decay 0.5 strengthens the sink (41.1 vs 18.2 %, {_GU})",
        paper_metric=_GU_METRIC,
        control=sinks("weight_decay=0.1"),
    ),
    _weakens(
        "weight_decay=2.0",
        "weight_decay=0.1",
        "ftm_auc",
        f"weight decay 2.0 weakens it (6.1 vs 18.2 %, {_GU})",
        paper_metric=_GU_METRIC,
    ),
)

NORM_SWEEP: tuple[Direction, ...] = (
    _weakens(
        "variant=post_rmsnorm",
        "variant=pre_rmsnorm",
        "ftm_auc",
        f"post-norm weakens the sink (13.5 vs 18.2 %, {_GU})",
        paper_metric=_GU_METRIC,
    ),
)

_GUO_METRIC = "the dormant heads' attention on BOS"
BB_DYNAMICS: tuple[Direction, ...] = tuple(
    _weakens(
        f"optim={optim},attention={attention}",
        "optim=bb_adamw,attention=softmax",
        "ftm_auc",
        f"{what} weakens the BOS sink of dormant heads (3 layers; Guo et al. 2024)",
        paper_metric=_GUO_METRIC,
    )
    for optim, attention, what in (
        ("bb_sgd", "softmax", "SGD instead of Adam"),
        ("bb_adamw", "relu", "ReLU attention instead of softmax"),
    )
)
# Guo et al.'s 10k steps, one seed a setting: the same directions, which the rule calls
# untestable (fewer than two seeds a side), so the section's figures stay descriptive.
BB_LONG = BB_DYNAMICS

SIGMOID_BOS_SWEEP: tuple[Direction, ...] = tuple(
    _weakens(
        f"variant=sigmoid,bos={bos}",
        f"variant=softmax,bos={bos}",
        "ftm_auc",
        f"sigmoid attention without normalisation has no sink (0.44* vs 18.2 %, {_GU}; "
        f"trained without BOS), here {'with' if bos == 'every_window' else 'without'} a "
        "BOS token",
        paper_metric=_GU_METRIC,
    )
    for bos in ("none", "every_window")
)
# The same directions on real text.
SIGMOID_BOS_TEXT_SWEEP = SIGMOID_BOS_SWEEP

FIRST_TOKEN_SWEEP: tuple[Direction, ...] = (
    Direction(
        "variant=first_random",
        "variant=first_natural",
        "ftm_auc",
        +1,
        f"a random first token strengthens the sink (27.0 vs 18.2 %, {_GU})",
        paper_metric=_GU_METRIC,
        control=sinks("variant=first_natural"),
    ),
)
