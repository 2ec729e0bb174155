"""One probe pass: capture and measure the probe set, run the optional evaluations that are
due at this step, tag the rows. The training callback, run reanalysis and pretrained
reanalysis all call `run_probe_pass`, so a checkpoint re-measured later gives the rows the
callback logged, in the same order (measure rows, then each evaluation's, in list order).

An optional evaluation (streaming, quantisation, ...) is an `Evaluation`: its metric family
(rows named `{name}/...`), when it is due, what it runs on a `PassContext`, and which of its
rows go to the logger. Each has a builder here; a caller lists the ones its config turns on.
A new evaluation is one builder and one entry in each caller's list; the pass, the timing
and the logger split need no change.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import pandas as pd
import torch

from sinklab.analysis.capture import capture
from sinklab.analysis.config import MetricsConfig
from sinklab.analysis.interventions import InterventionConfig, intervention_rows
from sinklab.analysis.pipeline import measure_probe_set
from sinklab.analysis.quant import check_causal
from sinklab.analysis.quant_eval import QUANT_KEY, ProbeQuantConfig
from sinklab.analysis.records import tag_rows
from sinklab.analysis.scalars import logger_scalars
from sinklab.analysis.streaming import StreamConfig, stream_eval
from sinklab.data.probe_set import ProbeSet
from sinklab.model.probe import ProbeOutput

if TYPE_CHECKING:
    from sinklab.data.run_data import QuantIds

# Stream rows that go to the logger: the model-level curves, not the per-bucket NLL or lengths.
_LOGGED_STREAM = ("stream/ppl/", "stream/ppl_all/", "stream/ratio/")


class Scheduled(Protocol):
    """An evaluation's config: on or off, and at which probe steps (`ProbeQuantConfig`,
    `ProbeStreamConfig`)."""

    enabled: bool

    def due(self, step: int, max_steps: int, log_spaced_until: int, every: int) -> bool: ...


def always(step: int) -> bool:
    """The schedule of an evaluation asked for explicitly: every pass."""
    return True


def on_schedule(
    cfg: Scheduled, max_steps: int, log_spaced_until: int, every: int
) -> Callable[[int], bool]:
    """step -> whether `cfg` is due there, on a run's probe schedule."""
    return lambda step: cfg.due(step, max_steps, log_spaced_until, every)


@dataclass
class PassContext:
    """What an evaluation may use: the model, the probe set, the probe's batching, and the
    capture (made on first use when the pass did not measure)."""

    model: torch.nn.Module
    probe_set: ProbeSet
    batch_size: int
    device: torch.device | str | None
    measure_on: str
    captured: ProbeOutput | None = None

    @property
    def probe(self) -> ProbeOutput:
        if self.captured is None:
            self.captured = capture(
                self.model,
                self.probe_set.input_ids,
                batch_size=self.batch_size,
                device=self.device,
                keep_on_device=self.measure_on == "device",
                keep_logits=False,  # the interventions score the unedited model themselves
            )
        return self.captured


@dataclass(frozen=True)
class Evaluation:
    """One optional step of the pass. `name` is its metric family (rows `{name}/...`) and its
    key in `PassResult.seconds`; `logged` picks the logger's scalars from its rows; `tags`
    are columns set on its rows alone (a pretrained model's per-evaluation checkpoint)."""

    name: str
    run: Callable[[PassContext], pd.DataFrame]
    due: Callable[[int], bool] = always
    logged: Callable[[pd.DataFrame], dict[str, float]] = logger_scalars
    tags: Mapping[str, object] = field(default_factory=dict)


@dataclass
class PassResult:
    """The pass's tagged rows, its capture (None when it did not measure) and the seconds of
    each evaluation that ran."""

    rows: pd.DataFrame
    probe: ProbeOutput | None
    seconds: dict[str, float]


def run_probe_pass(
    model: torch.nn.Module,
    probe_set: ProbeSet,
    metrics_cfg: MetricsConfig,
    evaluations: Sequence[Evaluation] = (),
    *,
    step: int,
    batch_size: int,
    device: torch.device | str | None = None,
    measure_on: str = "host",
    measure: bool = True,
    measure_tags: Mapping[str, object] | None = None,
    tags: Mapping[str, object] | None = None,
) -> PassResult:
    """Measure `probe_set` (unless `measure` is false), then every evaluation due at `step`,
    in order; rows concatenated and tagged with `tags` (run_id, step, ...)."""
    ctx = PassContext(model, probe_set, batch_size, device, measure_on)
    parts = []
    if measure:
        rows, ctx.captured = measure_probe_set(
            model,
            probe_set,
            metrics_cfg,
            batch_size=batch_size,
            device=device,
            measure_on=measure_on,
        )
        parts.append(tag_rows(rows, **measure_tags) if measure_tags else rows)
    seconds: dict[str, float] = {}
    for ev in evaluations:
        if not ev.due(step):
            continue
        started = time.perf_counter()
        rows = ev.run(ctx)
        seconds[ev.name] = time.perf_counter() - started
        parts.append(tag_rows(rows, **ev.tags) if ev.tags else rows)
    rows = pd.concat(parts, ignore_index=True)
    return PassResult(tag_rows(rows, **(tags or {})), ctx.captured, seconds)


def pass_scalars(rows: pd.DataFrame, evaluations: Sequence[Evaluation]) -> dict[str, float]:
    """The logger's scalars: the measure rows' aggregates, then each evaluation's share."""
    family = {ev.name: rows["metric"].str.startswith(f"{ev.name}/") for ev in evaluations}
    measured = pd.Series(True, index=rows.index)
    for mask in family.values():
        measured &= ~mask
    out = logger_scalars(rows[measured])
    for ev in evaluations:
        out.update(ev.logged(rows[family[ev.name]]))
    return out


# -- the evaluations ---------------------------------------------------------------------------


def stream_scalars(rows: pd.DataFrame) -> dict[str, float]:
    """The logger's share of the stream rows (`stream/ratio/window_shift`, ...)."""
    return logger_scalars(rows[rows["metric"].str.startswith(_LOGGED_STREAM)])


def quant_scalars(rows: pd.DataFrame) -> dict[str, float]:
    """The logger's share of the quant rows: `quant/ppl_increase/{mode}` (and per prefix)."""
    return logger_scalars(rows[rows["metric"].str.contains("ppl_increase/", regex=False)])


def stream_evaluation(
    cfg: StreamConfig,
    ids: torch.Tensor,
    due: Callable[[int], bool] = always,
    tags: Mapping[str, object] | None = None,
) -> Evaluation:
    """The streaming evaluation (`stream_eval`) of resolved `cfg` on the stream `ids` [T]."""
    return Evaluation(
        "stream", lambda ctx: stream_eval(ctx.model, ids, cfg), due, stream_scalars, tags or {}
    )


def quant_evaluation(
    cfg: ProbeQuantConfig,
    ids: QuantIds,
    due: Callable[[int], bool] = always,
    key: str = QUANT_KEY,
    tags: Mapping[str, object] | None = None,
) -> Evaluation:
    """The W8A8 evaluation (and prefixed sinks) of `cfg` on `ids` (`QuantIds`: windows,
    calibration batches, BOS); an encoder is refused naming `{key}.enabled`."""

    def run(ctx: PassContext) -> pd.DataFrame:
        check_causal(ctx.model, f"{key}.enabled")
        return cfg.evaluate(ctx.model, ids.eval_ids, ids.calib, ids.bos_id, key=key)

    return Evaluation("quant", run, due, quant_scalars, tags or {})


def intervention_evaluation(
    cfg: InterventionConfig,
    metrics_cfg: MetricsConfig,
    due: Callable[[int], bool] = always,
    tags: Mapping[str, object] | None = None,
) -> Evaluation:
    """The interventions of `cfg` (`intervention_rows`) on the probe set, from the pass's own
    capture (its logits are the unedited perplexity; massive activations by `metrics_cfg`'s
    rule). Its rows are the `intervention` family; all go to the logger (head = -1 only)."""

    def run(ctx: PassContext) -> pd.DataFrame:
        return intervention_rows(
            ctx.model,
            ctx.probe_set,
            ctx.probe,
            cfg,
            batch_size=ctx.batch_size,
            device=ctx.device,
            metrics=metrics_cfg,
        )

    return Evaluation("intervention", run, due, logger_scalars, tags or {})
