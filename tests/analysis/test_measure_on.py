"""`measure_on`: the probe's metric maths on the host or where the model runs. On a CPU both
are one device, so the rows must be the same bit for bit, trigger split and outlier sites
included; a bad value is refused with the key and the allowed values (the GPU comparison is
tests/gpu/test_measure_on_gpu.py)."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from sinklab import configs
from sinklab.analysis.config import MetricsConfig
from sinklab.analysis.pipeline import measure_probe_set
from sinklab.data.probe_set import ProbeSet
from sinklab.errors import ConfigError
from sinklab.model.config import ModelConfig
from sinklab.model.transformer import build_model
from sinklab.reanalysis.config import AnalyzeConfig
from sinklab.training.config import ProbeScheduleConfig


def _probe_set(n: int = 6, T: int = 16) -> ProbeSet:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 16, (n, T), generator=g)
    ids[:, 0] = 0  # BOS
    triggers = torch.zeros(n, T, dtype=torch.bool)
    triggers[:, 3::4] = True
    return ProbeSet(ids, ["w"] * n, trigger_mask=triggers, has_bos=True)


def test_host_and_device_give_the_same_rows_on_a_cpu() -> None:
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(vocab_size=16, d_model=32, n_layers=2, n_heads=2, max_seq_len=32)
    ).eval()
    cfg = MetricsConfig(outliers=True, qk=True, frames=True, spikes=True)
    host, probe_h = measure_probe_set(model, _probe_set(), cfg, batch_size=4, measure_on="host")
    dev, probe_d = measure_probe_set(model, _probe_set(), cfg, batch_size=4, measure_on="device")
    pd.testing.assert_frame_equal(host, dev, check_exact=True)
    assert probe_d.logits.device.type == probe_h.logits.device.type == "cpu"
    # every group ran, the trigger split and the outlier sites included
    metrics = set(host["metric"])
    assert {"dormancy/bos_attn_trigger", "outliers/qkv_in/max_abs", "frames/class"} <= metrics


def test_a_bad_value_is_refused() -> None:
    model = build_model(ModelConfig(vocab_size=16, d_model=16, n_layers=1, n_heads=2))
    with pytest.raises(ValueError, match="measure_on must be one of"):
        measure_probe_set(model, _probe_set(), measure_on="gpu")


@pytest.mark.parametrize(
    ("cls", "section"),
    [(ProbeScheduleConfig, "callbacks.probe"), (AnalyzeConfig, "")],
)
def test_the_config_key_names_its_choices(cls: type, section: str) -> None:
    values = (
        {"measure_on": "gpu"}
        if cls is ProbeScheduleConfig
        else {"target": "x", "measure_on": "gpu"}
    )
    with pytest.raises(ConfigError) as err:
        configs.from_mapping(cls, values, section)
    key = f"{section}.measure_on" if section else "measure_on"
    assert err.value.key == key
    assert "host" in str(err.value) and "device" in str(err.value)
