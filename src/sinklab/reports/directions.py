"""The published directions each study tests, with their sources.

A direction compares one setting of a sweep with its baseline on a robust statistic
(`evidence.py`): `ftm_auc` (time-averaged first-token mass) or `time_to_sink` (tokens until
Sink_1 stays above 10 %; a smaller time is a faster, stronger sink); for the streaming study
`r_win` / `r_win_noshift`, the final perplexity ratio of window attention (first tokens
evicted) to the recompute oracle, with and without position shift. Labels are the study
report's job labels (`pos=alibi`, `variant=sigmoid`, `min_context=64`, ...), matched whole
against each job's label, never parsed. Each tuple is named after the report view that tests
it; the study catalogue (`study_catalog.py`) attaches it to that view.
Figures quoted are Sink_1 at the end of the papers' runs (docs/metrics.md).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Direction:
    setting: str
    baseline: str
    statistic: str  # a key of reports.studies.STATISTICS
    sign: int  # +1: setting > baseline; -1: setting < baseline
    claim: str  # the published direction, in words, with its figures and source


_GU = "Gu et al. 2025"

_XIAO = "Xiao et al. 2024 (StreamingLLM)"

_BONDARENKO = "Bondarenko et al. 2023, OPT-125m"


def _fewer_outliers(variant: str, statistic: str, claim: str) -> Direction:
    return Direction(f"variant={variant}", "variant=softmax", statistic, -1, claim)


def _needs_no_first_token(variant: str, why: str) -> Direction:
    return Direction(
        f"variant={variant}",
        "variant=softmax",
        "r_win",
        -1,
        f"{why}: evicting the first tokens hurts less than for softmax ({_XIAO})",
    )


QUANT_SWEEP: tuple[Direction, ...] = (
    _fewer_outliers(
        "gated_head",
        "max_act",
        f"gated attention shrinks the largest activation (max inf-norm 340 -> 8.7, {_BONDARENKO})",
    ),
    _fewer_outliers(
        "gated_head",
        "w8a8_static",
        f"gated attention shrinks the W8A8 damage (PPL 21.18 -> 16.02, FP 15.84, {_BONDARENKO})",
    ),
    _fewer_outliers(
        "gated_head",
        "w4a4_static",
        f"gated attention shrinks the per-tensor quantisation damage (at 4 bits here; {_BONDARENKO} at 8)",
    ),
    _fewer_outliers(
        "gated_channel",
        "w4a4_static",
        "per-channel gating shrinks the per-tensor quantisation damage (at 4 bits here)",
    ),
    _fewer_outliers(
        "clipped_softmax",
        "w4a4_static",
        "clipped softmax shrinks the per-tensor quantisation damage (BERT; not on OPT, "
        f"{_BONDARENKO})",
    ),
    _fewer_outliers(
        "gated_channel",
        "max_act",
        "per-channel gating shrinks the largest activation (1053 -> 94, Qiu et al. 2025)",
    ),
    _fewer_outliers(
        "clipped_softmax",
        "max_act",
        "clipped softmax shrinks the largest activation (BERT; on OPT it did not help, "
        f"{_BONDARENKO})",
    ),
    _fewer_outliers(
        "sink_token",
        "max_act",
        "a sink in front takes the outliers off the text tokens (CushionCache, PrefixQuant)",
    ),
)

STREAMING_SWEEP: tuple[Direction, ...] = (
    _needs_no_first_token("sink_token", "a learnable sink token keeps the sink in the cache"),
    _needs_no_first_token("kv_bias", "a key/value bias is an always-kept sink slot"),
    _needs_no_first_token("sink_logit", "a sink logit lets heads attend to nothing"),
    _needs_no_first_token("off_by_one", "softmax off by one lets heads attend to nothing"),
    _needs_no_first_token("gated_head", "gating removes the need for a sink (Qiu et al.)"),
)

POS_SWEEP: tuple[Direction, ...] = (
    Direction("pos=learned", "pos=rope", "ftm_auc", +1, f"learned > RoPE (33.1 vs 18.2 %, {_GU})"),
    Direction("pos=none", "pos=rope", "ftm_auc", +1, f"NoPE > RoPE (20.4 vs 18.2 %, {_GU})"),
    Direction("pos=alibi", "pos=rope", "ftm_auc", +1, f"ALiBi > RoPE (20.8 vs 18.2 %, {_GU})"),
)

ATTENTION_SWEEP: tuple[Direction, ...] = (
    Direction(
        "variant=sigmoid",
        "variant=softmax",
        "ftm_auc",
        -1,
        f"sigmoid without normalisation removes the sink (0.44* vs 18.2 %, {_GU})",
    ),
    Direction(
        "variant=sink_token",
        "variant=softmax",
        "ftm_auc",
        -1,
        f"a learnable sink token moves the sink off token 0 (0.00 %, {_GU})",
    ),
    Direction(
        "variant=kv_bias",
        "variant=softmax",
        "ftm_auc",
        -1,
        f"a key/value bias moves the sink off token 0 (0.04 %, {_GU})",
    ),
    Direction(
        "variant=gated_head",
        "variant=softmax",
        "ftm_auc",
        -1,
        "per-head output gating shrinks the sink (6.4 vs 46.0 %, the Spike paper)",
    ),
    Direction(
        "variant=gated_channel",
        "variant=softmax",
        "ftm_auc",
        -1,
        "per-channel output gating shrinks the sink (4.5 vs 46.0 %, the Spike paper)",
    ),
    Direction(
        "variant=sink_logit",
        "variant=softmax",
        "ftm_auc",
        -1,
        "a per-head sink logit lets heads attend to nothing (gpt-oss)",
    ),
)

MIN_CONTEXT_SWEEP: tuple[Direction, ...] = (
    Direction(
        "min_context=32",
        "min_context=0",
        "ftm_auc",
        -1,
        "a minimum context of T/2 removes the sink (2048/4096: 1.2 vs 46.0 %, the Spike paper)",
    ),
    Direction(
        "min_context=16",
        "min_context=0",
        "ftm_auc",
        -1,
        "a minimum context of T/4 weakens it (1024/4096: 13.0 vs 46.0 %, the Spike paper)",
    ),
)

WEIGHT_DECAY_SWEEP: tuple[Direction, ...] = (
    Direction(
        "weight_decay=0.5",
        "weight_decay=0.1",
        "ftm_auc",
        +1,
        f"weight decay 0.5 strengthens the sink (41.1 vs 18.2 %, {_GU})",
    ),
    Direction(
        "weight_decay=2.0",
        "weight_decay=0.1",
        "ftm_auc",
        -1,
        f"weight decay 2.0 weakens it (6.1 vs 18.2 %, {_GU})",
    ),
)

NORM_SWEEP: tuple[Direction, ...] = (
    Direction(
        "variant=post_rmsnorm",
        "variant=pre_rmsnorm",
        "ftm_auc",
        -1,
        f"post-norm weakens the sink (13.5 vs 18.2 %, {_GU})",
    ),
)

BB_DYNAMICS: tuple[Direction, ...] = tuple(
    Direction(
        f"optim={optim},attention={attention}",
        "optim=bb_adamw,attention=softmax",
        "ftm_auc",
        -1,
        f"{what} weakens the BOS sink of dormant heads (3 layers; Guo et al. 2024)",
    )
    for optim, attention, what in (
        ("bb_sgd", "softmax", "SGD instead of Adam"),
        ("bb_adamw", "relu", "ReLU attention instead of softmax"),
    )
)

SIGMOID_BOS_SWEEP: tuple[Direction, ...] = tuple(
    Direction(
        f"variant=sigmoid,bos={bos}",
        f"variant=softmax,bos={bos}",
        "ftm_auc",
        -1,
        f"sigmoid attention without normalisation has no sink (0.44* vs 18.2 %, {_GU}; "
        f"trained without BOS), here {'with' if bos == 'every_window' else 'without'} a "
        "BOS token",
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
    ),
)
