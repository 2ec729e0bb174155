"""Turn measured rows into the flat scalar dict a Lightning logger plots as curves."""

from __future__ import annotations

import math

import pandas as pd


def logger_scalars(df: pd.DataFrame) -> dict[str, float]:
    """Aggregate rows only (head == -1): model rows keep the metric name (`sink/sink1_pct`),
    layer rows get `/layer_{l}` appended (`sink/first_token_mass/layer_3`). Per-head rows
    stay in the table; NaN values are left out so a logger never plots gaps as zeros.
    """
    agg = df[df["head"] == -1]
    out: dict[str, float] = {}
    for layer, metric, value in zip(
        agg["layer"].tolist(), agg["metric"].tolist(), agg["value"].tolist(), strict=True
    ):
        if value is None or math.isnan(float(value)):
            continue
        key = str(metric) if int(layer) == -1 else f"{metric}/layer_{int(layer)}"
        out[key] = float(value)
    return out
