"""`run_probe_pass`: the measure rows, then each due evaluation's, in list order, tagged; an
evaluation not due is skipped and untimed; the logger split gives each family its own filter;
a pass that does not measure still hands evaluations the capture. Checked against the parts
computed one by one (`measure_probe_set`, `stream_eval`, `ProbeQuantConfig.evaluate`)."""

from __future__ import annotations

import pandas as pd
import torch

from sinklab.analysis.config import MetricsConfig
from sinklab.analysis.pipeline import head_averaged_patterns, measure_probe_set
from sinklab.analysis.probe_pass import (
    Evaluation,
    pass_scalars,
    quant_evaluation,
    run_probe_pass,
    stream_evaluation,
)
from sinklab.analysis.quant_eval import ProbeQuantConfig
from sinklab.analysis.records import tag_rows
from sinklab.analysis.scalars import logger_scalars
from sinklab.analysis.streaming import ProbeStreamConfig, stream_eval
from sinklab.data.probe_set import ProbeSet
from sinklab.data.run_data import QuantIds
from sinklab.model.config import ModelConfig
from sinklab.model.transformer import build_model

TAGS = {"run_id": "r", "step": 4, "tokens_seen": 512, "config_hash": "h", "checkpoint": "c"}


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=16, d_model=32, n_layers=2, n_heads=2, max_seq_len=64)
    return build_model(cfg).eval()


def _inputs() -> tuple[ProbeSet, torch.Tensor, QuantIds]:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 16, (4, 16), generator=g)
    stream = torch.randint(1, 16, (48,), generator=g)
    quant = QuantIds(
        torch.randint(1, 16, (3, 16), generator=g),
        torch.randint(1, 16, (4, 2, 16), generator=g),
        torch.tensor(-1),
    )
    return ProbeSet(ids, ["w"] * 4), stream, quant


def test_rows_are_the_parts_in_order_tagged() -> None:
    model, (probe_set, stream, qids) = _model(), _inputs()
    mcfg = MetricsConfig(spikes=False, frames=False)
    scfg = ProbeStreamConfig().resolved(16)
    qcfg = ProbeQuantConfig(enabled=True)
    never = Evaluation("never", lambda ctx: pd.DataFrame(), due=lambda step: False)
    evaluations = [stream_evaluation(scfg, stream), never, quant_evaluation(qcfg, qids)]
    result = run_probe_pass(model, probe_set, mcfg, evaluations, step=4, batch_size=2, tags=TAGS)
    measured, probe = measure_probe_set(model, probe_set, mcfg, batch_size=2)
    parts = [
        measured,
        stream_eval(model, stream, scfg),
        qcfg.evaluate(model, qids.eval_ids, qids.calib, qids.bos_id),
    ]
    expected = tag_rows(pd.concat(parts, ignore_index=True), **TAGS)
    pd.testing.assert_frame_equal(result.rows, expected, check_exact=True)
    assert set(result.seconds) == {"stream", "quant"}  # `never` was not due: not run, not timed
    assert [m.shape for m in head_averaged_patterns(result.probe)] == [
        m.shape for m in head_averaged_patterns(probe)
    ]

    # the logger: measure aggregates, then each family through its own filter
    scalars = pass_scalars(result.rows, evaluations)
    is_measure = ~result.rows["metric"].str.match(r"^(stream|quant|never)/")
    assert {k: v for k, v in scalars.items() if not k.startswith(("stream/", "quant/"))} == (
        logger_scalars(result.rows[is_measure])
    )
    assert "stream/ppl/window_shift" in scalars
    assert not any(k.startswith("stream/nll/") for k in scalars)  # per-bucket rows stay out
    assert {k for k in scalars if k.startswith("quant/")} == {
        f"quant/ppl_increase/{mode}" for mode in qcfg.quantizer.modes
    }


def test_a_pass_that_does_not_measure_captures_for_an_evaluation_that_asks() -> None:
    model, (probe_set, _, _) = _model(), _inputs()
    seen = []

    def needs_capture(ctx) -> pd.DataFrame:  # noqa: ANN001
        seen.append(ctx.probe.n_layers)
        return pd.DataFrame({"layer": [-1], "head": [-1], "metric": ["x/n"], "value": [1.0]})

    result = run_probe_pass(
        model,
        probe_set,
        MetricsConfig(),
        [Evaluation("x", needs_capture, tags={"checkpoint": "x-tag"})],
        step=-1,
        batch_size=2,
        measure=False,
        tags={"run_id": "m", "step": -1},
    )
    assert seen == [2] and result.probe is not None  # captured on demand
    assert result.rows["metric"].tolist() == ["x/n"]
    assert result.rows[["run_id", "step", "checkpoint"]].values.tolist() == [["m", -1, "x-tag"]]
