"""Fabricated study folders: every study of the catalogue laid out as Hydra and the probe
callback lay it out, with seeded random values for every metric a report reads.

Real study outputs take 1.5 h of CPU to make; these take seconds, and they are enough to
prove that a change to the report code leaves every generated table and figure as it was
(compare the reports of the old and the new code on the same folders, byte for byte).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from sinklab.analysis import names

STEPS = (0, 1, 2, 4, 8, 16, 32, 64, 100, 200, 300)
LAYERS = 2
PREFIXES = ("bos", "prefixquant", "cushioncache")
# Whole-model rows (layer -1) and layer rows of every metric a study report reads.
MODEL_METRICS = (
    names.SINK1,
    names.SINK_RATIO,
    names.FIRST_TOKEN_MASS,
    names.ALPHA0_MAX,
    names.VALUE_DRAIN,
    names.BOS_ATTN_NONTRIGGER,
    names.BOS_ATTN_TRIGGER,
    "stream/ppl/recompute",
    "stream/ratio/dense",
    "stream/ratio/window_shift",
    "stream/ratio/window",
    "stream/ratio/sinks1_shift",
    "stream/ratio/sinks4_shift",
    "stream/ratio/sinks4",
    "stream/ratio/sinks8_shift",
    "quant/ppl/fp",
    "quant/ppl/per_tensor_static",
    "quant/ppl/per_tensor_dynamic",
    "quant/ppl/per_token_dynamic",
    "quant/ppl_increase/per_tensor_static",
    "outliers/resid_post/max_abs",
)
LAYER_METRICS = (
    names.TOP1_OVER_MEDIAN,
    names.VALUE_DRAIN,
    names.RESID_PEAK,
    names.BOS_RESID_NORM,
    "outliers/resid_post/kurtosis_mean",
    "outliers/down_in/token_max_over_median",
    "frames/star_likeness",
    "frames/indegree_gini",
    "frames/fiedler",
    "frames/participation_ratio",
    "frames/row_entropy_norm",
    "frames/top_column_mass",
)
SLOT_VARIANTS = {"sink_token": "sink_token", "kv_bias": "kv_bias", "sink_logit": "sink_logit"}


def sweep_params(experiment: str, seeds: int = 2) -> dict[str, str]:
    """The experiment's sweeper params (composed as `make study-<name>` composes them), with
    the seed list cut to its first `seeds` values to keep the folders small."""
    from hydra import compose, initialize_config_dir

    from sinklab.configs import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="train", overrides=[f"experiment={experiment}"], return_hydra_config=True
        )
    params = {str(k): str(v) for k, v in (cfg.hydra.sweeper.get("params") or {}).items()}
    if "seed" in params:
        params["seed"] = ",".join(params["seed"].split(",")[:seeds])
    return params


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("/".join(map(str, parts)).encode()))


def _probe_rows(rng: np.random.Generator, setting: dict[str, str]) -> pd.DataFrame:
    variant = setting.get("variant", "")
    metrics = list(MODEL_METRICS)
    if variant in SLOT_VARIANTS:
        metrics.append(f"slot_sink_pct/{SLOT_VARIANTS[variant]}")
    final_class = int(rng.integers(0, 4))
    settle = int(rng.integers(0, len(STEPS)))
    records = []
    for i, step in enumerate(STEPS):
        base = dict(step=step, tokens_seen=step * 2048, head=-1)
        growth = i / (len(STEPS) - 1)
        for metric in metrics:
            value = float(rng.uniform(0.5, 1.5)) * (1 + 40 * growth)
            if metric == names.FIRST_TOKEN_MASS:
                value = float(rng.uniform(0.0, 0.3)) * growth
            records.append(dict(base, layer=-1, metric=metric, value=value))
        code = final_class if i >= settle else int(rng.integers(0, 4))
        records.append(dict(base, layer=-1, metric=names.FRAME_CLASS, value=float(code)))
        for layer in range(LAYERS):
            for metric in LAYER_METRICS:
                value = float(rng.uniform(0.1, 2.0)) * (1 + growth)
                records.append(dict(base, layer=layer, metric=metric, value=value))
            for rank in range(2):
                position = float(rng.choice([0, 1, 30, 62, 63]))
                records.append(
                    dict(
                        base, layer=layer, metric=f"frames/ref_position/rank_{rank}", value=position
                    )
                )
                records.append(
                    dict(
                        base,
                        layer=layer,
                        metric=f"frames/ref_mass/rank_{rank}",
                        value=float(rng.uniform(0.0, 0.4)),
                    )
                )
    return pd.DataFrame.from_records(records)


def _analysis_rows(rng: np.random.Generator, metrics: list[str], step: int) -> pd.DataFrame:
    return pd.DataFrame.from_records(
        [
            dict(
                step=step,
                tokens_seen=step * 2048,
                layer=-1,
                head=-1,
                metric=m,
                value=float(rng.uniform(1.0, 30.0)),
            )
            for m in metrics
        ]
    )


def _job(folder: Path, overrides: list[str], config: dict, rows: pd.DataFrame, val: float) -> None:
    (folder / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), folder / ".hydra" / "overrides.yaml")
    OmegaConf.save(OmegaConf.create(config), folder / ".hydra" / "config.yaml")
    (folder / "probe").mkdir()
    (folder / "probe" / "probe_set.npz").write_bytes(b"")
    (folder / "metrics").mkdir()
    rows.to_parquet(folder / "metrics" / "probes.parquet")
    (folder / "summary.json").write_text(json.dumps({"final_val_loss": val}))


def _grid(params: dict[str, str]) -> list[dict[str, str]]:
    """Hydra's basic sweeper order: the cartesian product, the first key slowest."""
    grid: list[dict[str, str]] = [{}]
    for key, values in params.items():
        grid = [dict(g, **{key: v}) for g in grid for v in values.split(",")]
    return grid


def fake_study(root: Path, name: str, params: dict[str, str]) -> Path:
    """`root/name`: one finished job per point of the sweep `params` (Hydra's multirun.yaml,
    each job's overrides and saved config, probe rows, summary), and for attention_sweep the
    post-step's rows (`metrics/reanalysis.parquet`, `root/attention_sweep_w4/<job>/`)."""
    study = root / name
    study.mkdir(parents=True)
    OmegaConf.save(
        OmegaConf.create({"hydra": {"sweeper": {"params": params}}}), study / "multirun.yaml"
    )
    for i, point in enumerate(_grid(params)):
        rng = _rng(name, i)
        short = {k.rsplit(".", 1)[-1]: v for k, v in point.items()}
        seed = int(point.get("seed", 0))
        encoder = short.get("variant") == "encoder" or name == "frames_end_token_sweep"
        config = {
            "seed": seed,
            "model": {"pos": short.get("pos", "rope"), "causal": not encoder},
            "data": {"objective": "mlm" if encoder else "clm"},
        }
        overrides = [f"{k}={v}" for k, v in point.items()] + ["trainer.threads=1"]
        rows = _probe_rows(rng, short)
        job = study / str(i)
        _job(job, overrides, config, rows, float(rng.uniform(1.0, 3.0)))
        if name == "attention_sweep":
            last = STEPS[-1]
            prefix = [
                f"quant/prefix/{p}/{m}"
                for p in PREFIXES
                for m in ("len", "ppl_fp_change", "ppl/per_tensor_static", "max_act")
            ]
            # a metric the probe table has too: the report must keep the probe row
            extra = _analysis_rows(rng, [*prefix, names.SINK1], last)
            extra.to_parquet(job / "metrics" / "reanalysis.parquet")
            four = [
                "quant/max_act",
                "quant/ppl_increase/per_tensor_static",
                "quant/ppl_increase/per_tensor_dynamic",
                "quant/ppl_increase/per_token_dynamic",
            ] + [
                f"quant/prefix/{p}/{m}"
                for p in PREFIXES
                for m in ("len", "ppl_increase/per_tensor_static")
            ]
            w4 = root / "attention_sweep_w4" / str(i)
            w4.mkdir(parents=True)
            _analysis_rows(rng, four, last).to_parquet(w4 / "reanalysis.parquet")
    return study
