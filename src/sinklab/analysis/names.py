"""The metric names that more than one module writes or reads, as constants.

`measure` writes these names and the summary, reports, figures and the pretrained report
read them back; a typo at the reading end would silently find no rows, so both ends use
these constants instead of string literals. Each one is a row name of the registry
(`registry.METRICS`), which a test checks. Their definitions live there too.
"""

from __future__ import annotations

# Sinks (Gu et al.; the Spike paper)
SINK1 = "sink/sink1_pct"
SINK_RATIO = "sink/sink_ratio_pct"
FIRST_TOKEN_MASS = "sink/first_token_mass"
ALPHA0_MAX = "sink/alpha_0_max"

# The sink metrics also measured on the queries t >= metrics.query_start only (when it is
# > 0), under `from_query_start(name)`: `sink/sink1_pct` -> `sink/sink1_pct/from_query_start`.
# The name is fixed, not numbered, so runs of a study share it; the run's config says which
# query_start made it (the min-context study sets the sweep's largest min_context).
FROM_QUERY_START = (SINK1, SINK_RATIO, FIRST_TOKEN_MASS, ALPHA0_MAX)


def from_query_start(metric: str) -> str:
    """The name of `metric` measured on the queries t >= metrics.query_start only."""
    return f"{metric}/from_query_start"


# Massive activations (Sun et al.)
TOP1 = "massive/top1"
TOP2 = "massive/top2"
TOP3 = "massive/top3"
MEDIAN = "massive/median"
TOP1_OVER_MEDIAN = "massive/top1_over_median"
TOP1_POSITION = "massive/top1_position"
TOP1_CHANNEL = "massive/top1_channel"
SUN_COUNT = "massive/sun_count"

# Dormancy (Guo et al.)
VALUE_DRAIN = "dormancy/value_drain"
RESID_PEAK = "dormancy/resid_peak"
BOS_RESID_NORM = "dormancy/bos_resid_norm"
BOS_ATTN_TRIGGER = "dormancy/bos_attn_trigger"
BOS_ATTN_NONTRIGGER = "dormancy/bos_attn_nontrigger"

# Reference frames (Ruscio et al.)
FRAME_CLASS = "frames/class"

# The curves a run summary and a study report lead with.
HEADLINE = (SINK1, SINK_RATIO, FIRST_TOKEN_MASS)
