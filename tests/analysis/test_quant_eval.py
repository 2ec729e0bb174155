"""`ProbeQuantConfig` holds `QuantConfig` and `PrefixConfig` as sections instead of copying
their fields: the probe's own defaults (4 calibration batches, no prefixes) survive a section
given in part, the old flat layout reads as the nested one, and a bad nested key is one line
naming it."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from sinklab.analysis.prefix import PrefixConfig
from sinklab.analysis.quant import MODES, QuantConfig
from sinklab.analysis.quant_eval import ProbeQuantConfig, merge, nest_quant, section_of
from sinklab.configs import CONF_DIR
from sinklab.errors import ConfigError

# callbacks.probe.quant as runs saved it before the sections existed
FLAT = {
    "enabled": True,
    "from_step": 256,
    "eval_windows": 64,
    "bits": 4,
    "weight_granularity": "per_tensor",
    "modes": ["per_token_dynamic"],
    "calibration_batches": 3,
    "batch_size": 8,
    "prefixes": ["bos"],
    "max_len": 2,
    "eta": 32.0,
    "n_candidates": 16,
    "min_gain": 0.1,
    "search_batches": 1,
}


def test_the_probe_defaults_are_its_own_not_the_sections() -> None:
    cfg = ProbeQuantConfig()
    assert cfg.quantizer == QuantConfig(calibration_batches=4)
    assert cfg.prefix == PrefixConfig(prefixes=())
    assert QuantConfig().calibration_batches == 16 and PrefixConfig().prefixes != ()
    # a section given in part keeps the probe's defaults for the rest
    part = ProbeQuantConfig.from_dict({"quantizer": {"bits": 4}})
    assert part.quantizer == QuantConfig(bits=4, calibration_batches=4)
    assert part.prefix.prefixes == ()


def test_the_old_flat_layout_reads_as_the_nested_one() -> None:
    nested = nest_quant(FLAT)
    assert nested == {
        "enabled": True,
        "from_step": 256,
        "eval_windows": 64,
        "quantizer": {
            "bits": 4,
            "weight_granularity": "per_tensor",
            "modes": ["per_token_dynamic"],
            "calibration_batches": 3,
            "batch_size": 8,
        },
        "prefix": {
            "prefixes": ["bos"],
            "max_len": 2,
            "eta": 32.0,
            "n_candidates": 16,
            "min_gain": 0.1,
            "search_batches": 1,
        },
    }
    cfg = ProbeQuantConfig.from_dict(FLAT)
    assert cfg == ProbeQuantConfig.from_dict(nested)
    assert cfg.quantizer == QuantConfig(4, "per_tensor", ("per_token_dynamic",), 3, 8)
    assert ProbeQuantConfig.from_dict(cfg.to_dict()) == cfg  # the round trip
    # both ways at once: the nested value wins
    assert nest_quant({"bits": 4, "quantizer": {"bits": 6}}) == {"quantizer": {"bits": 6}}
    assert section_of("bits") == "quantizer" and section_of("eta") == "prefix"
    assert section_of("from_step") is None and section_of("colour") is None


def test_merge_is_key_by_key_in_sections() -> None:
    base = {"a": 1, "s": {"x": 1, "y": 2}}
    assert merge(base, {"s": {"y": 3}, "b": 2}) == {"a": 1, "s": {"x": 1, "y": 3}, "b": 2}
    assert base == {"a": 1, "s": {"x": 1, "y": 2}}  # not changed in place


@pytest.mark.parametrize(
    ("values", "key", "says"),
    [
        ({"quantizer": {"bits": 1}}, "callbacks.probe.quant.quantizer.bits", "must be in 2..16"),
        ({"bits": 1}, "callbacks.probe.quant.quantizer.bits", "must be in 2..16"),
        ({"quantizer": {"colour": 1}}, "callbacks.probe.quant.quantizer.colour", "unknown key"),
        ({"prefix": {"prefixes": ["x"]}}, "callbacks.probe.quant.prefix.prefixes", "must be"),
        ({"prefix": {"bos_id": 2}}, "callbacks.probe.quant.prefix.bos_id", "is filled from"),
        ({"colour": 1}, "callbacks.probe.quant.colour", "unknown key; known keys: enabled"),
        ({"from_step": -1}, "callbacks.probe.quant.from_step", "must be >= 0"),
    ],
)
def test_a_bad_key_is_one_line_naming_it(values: dict, key: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        ProbeQuantConfig.from_dict(values)
    assert err.value.key == key and says in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError) as err:  # sinklab-analyze's section
        ProbeQuantConfig.from_dict(values, section="quant")
    assert err.value.key == "quant" + key.removeprefix("callbacks.probe.quant")


def test_default_yaml_is_the_dataclass_with_the_models_causality() -> None:
    """conf/callbacks/default.yaml spells every key of the section; its values are the
    dataclass defaults (enabled follows model.causal), so code and config agree."""
    raw = OmegaConf.load(f"{CONF_DIR}/callbacks/default.yaml")
    section = OmegaConf.to_container(raw.probe.quant, resolve=False)
    assert section.pop("enabled") == "${model.causal}"
    assert ProbeQuantConfig.from_dict(section) == ProbeQuantConfig()
    assert set(section["quantizer"]) == set(QuantConfig().to_dict())
    assert section["quantizer"]["modes"] == list(MODES)
    # sinklab-analyze's quant section has the same keys, each null (keep the run's)
    analyze = OmegaConf.to_container(OmegaConf.load(f"{CONF_DIR}/analyze.yaml").quant)
    assert _keys(analyze) == _keys({"enabled": None, **section})
    assert all(v is None for v in _leaves(analyze))


def test_the_schedule_is_first_last_and_powers_of_two_from_step() -> None:
    cfg = ProbeQuantConfig(enabled=True, from_step=256)
    # the default run's probe steps: 0, 1, 2, 4, ..., 256, then every 200 to 1200
    assert [s for s in range(1201) if cfg.due(s, 1200, 256, 200)] == [0, 256, 1200]


def _keys(d: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in d.items():
        out |= _keys(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return out


def _leaves(d: dict) -> list:
    return [x for v in d.values() for x in (_leaves(v) if isinstance(v, dict) else [v])]
