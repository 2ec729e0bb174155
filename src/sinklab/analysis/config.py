"""`MetricsConfig`: every threshold the metrics use, in one place, with the defaults of
docs/metrics.md (eps 0.3, first key = position 0).

A run's probe callback, the reanalysis script and the pretrained-model analysis all build
this from their Hydra config, so the numbers a table holds always say which thresholds
made them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

from sinklab.configs import from_mapping
from sinklab.errors import check

MetricGroup = Literal[
    "sinks", "qk", "massive", "spikes", "frames", "dormancy", "outliers", "interventions"
]
GROUPS: tuple[str, ...] = get_args(MetricGroup)


@dataclass(frozen=True)
class MetricsConfig:
    """Thresholds and switches for `sinklab.analysis.measure`.

    Sinks: `eps` is Gu et al.'s threshold for Sink_k and the Spike paper's sink ratio;
    `sink_keys` the key positions k whose Sink_k is reported (0 is Gu's Sink_1);
    `early_keys` how many alpha_k columns (k = 0 .. early_keys-1) are recorded per head;
    `sink_ratio_max_key` the last key the sink ratio looks at (None: T // 2).
    `query_start` > 0 adds Sink_1, the sink ratio, the first-token mass and alpha_0 max
    measured on the queries t >= query_start only (`names.from_query_start`), beside the
    all-queries rows: a run trained with no loss on t < data.min_context is then also
    measured where its loss is (see `sinks.alpha0_from`).

    Massive activations: Sun et al.'s rule |a| > `massive_abs` and |a| >= `massive_rel` x
    median; `top_values` how many top |h| are recorded; `spike_channels` how many channels
    get the SwiGLU spike anatomy (their eigen-decomposition is the only costly step).

    Frames (see `frames.py` for the classification rule): `ref_threshold` mean attention
    received that makes a reference token, `ref_fallback_frac` / `ref_cap_frac` Ruscio et
    al.'s fallback and cap, `tau` the graph threshold, `top_column_frac` the share of
    columns for the column-mass measurement, `central_dominance`, `bidir_balance` and
    `edge_frac` the class thresholds, `max_ref_logged` how many reference tokens get rows.

    Dormancy (see `dormancy.py`): a head is dormant at a query position when its attention
    on BOS (key 0) is at least `dormant_threshold`. `intervention` turns on the costly
    zeroing check (two forwards per head) when `measure` gets a model and input ids.

    Outliers (see `outliers.py`): the linear-layer inputs' magnitudes, kurtosis and
    PrefixQuant's outlier tokens, m_t > `outlier_eta` x the window's median token maximum;
    `outlier_top` how many of the most frequent outlier positions and token ids get rows.
    """

    eps: float = 0.3
    sink_keys: tuple[int, ...] = (0,)
    early_keys: int = 4
    sink_ratio_max_key: int | None = None
    # > 0: Sink_1, the sink ratio, first-token mass and alpha_0 max also on queries t >= it
    query_start: int = 0

    massive_abs: float = 100.0
    massive_rel: float = 1000.0
    top_values: int = 3
    spike_channels: int = 3

    ref_threshold: float = 0.1
    ref_fallback_frac: float = 0.1
    ref_cap_frac: float = 0.3
    tau: float = 0.02
    top_column_frac: float = 0.1
    central_dominance: float = 2.0
    bidir_balance: float = 0.5
    edge_frac: float = 0.1
    max_ref_logged: int = 4

    dormant_threshold: float = 0.5
    intervention: bool = False
    intervention_batch_size: int = 25

    outlier_eta: float = 64.0
    outlier_top: int = 3

    sinks: bool = True
    qk: bool = True
    massive: bool = True
    spikes: bool = True
    frames: bool = True
    dormancy: bool = True
    outliers: bool = True
    # not measured by `measure`: the probe pass runs `interventions.intervention_rows` when
    # this group is on and its own config (`callbacks.probe.interventions`) says it is due
    interventions: bool = True

    def __post_init__(self) -> None:
        # Hydra hands lists; keep the dataclass hashable and immutable.
        object.__setattr__(self, "sink_keys", tuple(int(k) for k in self.sink_keys))
        check(0.0 < self.eps < 1.0, "metrics.eps", f"must be in (0, 1), got {self.eps}")
        check(len(self.sink_keys) > 0, "metrics.sink_keys", "needs at least one key position")
        check(
            all(k >= 0 for k in self.sink_keys),
            "metrics.sink_keys",
            f"positions must be >= 0, got {list(self.sink_keys)}",
        )
        check(
            self.query_start >= 0,
            "metrics.query_start",
            f"must be >= 0 (0: no extra rows), got {self.query_start}",
        )
        check(self.early_keys >= 1, "metrics.early_keys", f"must be >= 1, got {self.early_keys}")
        check(
            1 <= self.top_values <= 10,
            "metrics.top_values",
            f"must be in 1..10, got {self.top_values}",
        )
        check(
            self.spike_channels >= 0,
            "metrics.spike_channels",
            f"must be >= 0, got {self.spike_channels}",
        )
        check(0.0 < self.tau < 1.0, "metrics.tau", f"must be in (0, 1), got {self.tau}")
        check(
            0.0 < self.ref_threshold < 1.0,
            "metrics.ref_threshold",
            f"must be in (0, 1), got {self.ref_threshold}",
        )
        check(
            0.0 < self.top_column_frac <= 1.0,
            "metrics.top_column_frac",
            f"must be in (0, 1], got {self.top_column_frac}",
        )
        check(
            self.central_dominance >= 1.0,
            "metrics.central_dominance",
            f"must be >= 1, got {self.central_dominance}",
        )
        check(
            0.0 < self.bidir_balance <= 1.0,
            "metrics.bidir_balance",
            f"must be in (0, 1], got {self.bidir_balance}",
        )
        check(
            0.0 < self.edge_frac < 0.5,
            "metrics.edge_frac",
            f"must be in (0, 0.5), got {self.edge_frac}",
        )
        check(
            0.0 < self.dormant_threshold <= 1.0,
            "metrics.dormant_threshold",
            f"must be in (0, 1], got {self.dormant_threshold}",
        )
        check(self.intervention_batch_size >= 1, "metrics.intervention_batch_size", "must be >= 1")
        check(
            self.outlier_eta > 1.0,
            "metrics.outlier_eta",
            f"must be > 1, got {self.outlier_eta}",
        )
        check(
            0 <= self.outlier_top <= 10,
            "metrics.outlier_top",
            f"must be in 0..10, got {self.outlier_top}",
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["sink_keys"] = list(self.sink_keys)
        return out

    @classmethod
    def from_dict(cls, values: Any) -> MetricsConfig:
        """Build from a plain mapping (a Hydra node); an unknown key or a wrong type is a
        one-line ConfigError naming `metrics.<key>`."""
        return from_mapping(cls, values, "metrics")

    def groups(self) -> tuple[str, ...]:
        return tuple(g for g in GROUPS if getattr(self, g))
