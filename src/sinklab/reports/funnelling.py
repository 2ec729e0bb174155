"""Pyramidal funnelling (seed 001): attention scatters in the lower layers and focuses on a
few tokens in the upper layers.

Two per-layer metrics of the head-averaged map measure it (`analysis.frames`):
- the normalised row entropy (1 = a uniform row, 0 = all mass on one key), and
- the top-column mass (the share of all attention received by the top 10 % of keys).

Rule (stated so it can be argued with): split the layers into a lower and an upper half
(the middle layer of an odd count belongs to neither). A model *funnels* when its upper half
has a lower mean entropy AND a higher mean top-column mass than its lower half; it *widens*
when both go the other way; otherwise the picture is *mixed*. With 2 layers the halves are
the two layers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import pandas as pd

ENTROPY = "frames/row_entropy_norm"
TOP_MASS = "frames/top_column_mass"
FUNNEL_METRICS = (("normalised row entropy", ENTROPY), ("top-10 % column mass", TOP_MASS))


def layer_values(rows: pd.DataFrame, metric: str, step: int | None = None) -> pd.Series:
    """The metric's layer rows (head-averaged maps, head == -1) at one step (default: the
    last), indexed by layer; several rows at one (layer, step), e.g. several runs, are averaged."""
    part = rows[(rows["metric"] == metric) & (rows["head"] == -1) & (rows["layer"] >= 0)]
    if "step" in part.columns and len(part):
        part = part[part["step"] == (part["step"].max() if step is None else step)]
    return part.groupby("layer")["value"].mean().sort_index()


def halves(values: pd.Series) -> tuple[float, float]:
    """(lower-half mean, upper-half mean) over the layers; NaN when there is only one layer."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    lower = values.iloc[: n // 2]
    upper = values.iloc[n - n // 2 :]
    return float(lower.mean()), float(upper.mean())


@dataclass(frozen=True)
class Funnel:
    """Lower- and upper-half means of both metrics, and the verdict of the module's rule."""

    entropy_lower: float
    entropy_upper: float
    mass_lower: float
    mass_upper: float

    @property
    def verdict(self) -> str:
        values = (self.entropy_lower, self.entropy_upper, self.mass_lower, self.mass_upper)
        if any(math.isnan(v) for v in values):
            return "-"
        focuses = self.entropy_upper < self.entropy_lower
        concentrates = self.mass_upper > self.mass_lower
        if focuses and concentrates:
            return "funnels"
        if not focuses and not concentrates:
            return "widens"
        return "mixed"


def funnel(rows: pd.DataFrame, step: int | None = None) -> Funnel:
    """The funnelling summary of one run's (or one pretrained model's) rows at `step`."""
    e_low, e_up = halves(layer_values(rows, ENTROPY, step))
    m_low, m_up = halves(layer_values(rows, TOP_MASS, step))
    return Funnel(e_low, e_up, m_low, m_up)


def funnel_by_layer_figure(profiles: Mapping[str, pd.DataFrame], title: str = "") -> plt.Figure:
    """Both metrics against relative depth (layer / (L - 1)), one line per model at its last
    step, so a 2-layer model and a 30-layer one share the axis."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, (label, metric) in zip(axes, FUNNEL_METRICS, strict=True):
        for name, rows in profiles.items():
            values = layer_values(rows, metric)
            if values.empty:
                continue
            depth = values.index.to_numpy(dtype=float) / max(1, int(values.index.max()))
            ax.plot(depth, values.to_numpy(), "o-", ms=3, label=name)
        ax.set_xlabel("relative depth (layer / last layer)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if axes[0].lines:
        axes[0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def funnel_over_training_figure(
    settings: Mapping[str, Sequence[pd.DataFrame]], title: str = ""
) -> plt.Figure:
    """Both metrics over training, one row of panels per setting and one line per layer
    (averaged over the setting's runs, e.g. its seeds): funnelling shows as the upper layers'
    lines separating downwards (entropy) and upwards (mass) as training goes on."""
    n_rows = max(1, len(settings))
    fig, axes = plt.subplots(n_rows, 2, figsize=(9, 2.2 * n_rows + 0.6), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for row, (setting, runs) in enumerate(settings.items()):
        rows = pd.concat(list(runs), ignore_index=True)
        for ax, (label, metric) in zip(axes[row], FUNNEL_METRICS, strict=True):
            part = rows[(rows["metric"] == metric) & (rows["head"] == -1) & (rows["layer"] >= 0)]
            grid = part.pivot_table(index="tokens_seen", columns="layer", values="value")
            n = max(1, grid.shape[1] - 1)
            x = grid.index.to_numpy(dtype=float).clip(min=1.0)
            for i, layer in enumerate(grid.columns):
                ax.plot(x, grid[layer].to_numpy(), color=cmap(i / n), label=f"layer {layer}")
            ax.set_xscale("log")
            ax.set_ylabel(label, fontsize=8)
            ax.set_title(setting, fontsize=8)
            ax.grid(alpha=0.3)
        if row == 0 and axes[row][0].lines:
            axes[row][0].legend(fontsize=6)
    for ax in axes[-1]:
        ax.set_xlabel("tokens seen")
    if title:
        fig.suptitle(title, fontsize=10)
    # keep the suptitle clear of the first row's titles
    fig.tight_layout(rect=(0.0, 0.0, 1.0, 1.0 - 0.35 / (2.2 * n_rows + 0.6)))
    return fig
