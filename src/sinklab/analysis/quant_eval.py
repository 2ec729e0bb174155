"""The probe's quantisation evaluation: when it runs and with which settings.

`ProbeQuantConfig` is `callbacks.probe.quant` (and, as overrides, sinklab-analyze's `quant`):
a schedule (`enabled`, `from_step`), the evaluation windows, and two nested sections that are
the evaluation's own configs, so no field is declared twice:

    quantizer   `QuantConfig` (bits, weight granularity, activation modes, calibration)
    prefix      `PrefixConfig` (the prefixed-sink evaluation; `prefixes: []` turns it off)

The probe's defaults differ from those classes' own (4 calibration batches, not 16; no
prefixes, not all three: each costs ~25 s), so they are spelt out once, in `PROBE_QUANTIZER`
and `PROBE_PREFIX`. Runs saved before the sections existed hold the same keys flat;
`nest_quant` moves them into their sections, and `sinklab-analyze quant.bits=4` keeps working
through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from sinklab.analysis.prefix import PrefixConfig, prefix_eval
from sinklab.analysis.quant import QuantConfig, w8a8_eval
from sinklab.configs import from_mapping, plain
from sinklab.errors import ConfigError, check
from sinklab.runs.schedule import is_scheduled

if TYPE_CHECKING:
    import pandas as pd

QUANT_KEY = "callbacks.probe.quant"
PROBE_QUANTIZER = QuantConfig(calibration_batches=4)
PROBE_PREFIX = PrefixConfig(prefixes=())
# the nested sections: field name -> config class
SECTIONS: dict[str, type] = {"quantizer": QuantConfig, "prefix": PrefixConfig}


@dataclass(frozen=True)
class ProbeQuantConfig:
    """`callbacks.probe.quant`: the fake-quantised W8A8 evaluation (`analysis.quant`) and, with
    `prefix.prefixes` non-empty, the prefixed-sink evaluation (`analysis.prefix`) at the first
    and last steps and at the probe steps from `from_step` on that are powers of two (`due`).

    On for causal models in `conf/callbacks/default.yaml` (the dataclass default stays off, for
    code that builds one by hand): one evaluation of the default run's model (64 windows x 128
    tokens, 4 calibration batches, 3 modes) takes about 1 s on one CPU thread (0.65 s on two),
    and the default run has three (steps 0, 256 and 1200). Its time is reported apart from the
    probes' (`quant_share_pct` beside `probe_share_pct` in the run summary), since it runs on
    its own, sparser schedule. Calibration batches are training batches
    `RunData.batch_at(CALIB_INDEX + k)`, indices no run reaches; the evaluation windows are the
    first `eval_windows` validation windows. Both are saved to `probe/quant_ids.npz`.
    `prefix.bos_id` stays null: the tokenizer's BOS is filled in when the evaluation runs.
    """

    enabled: bool = False
    from_step: int = 256
    eval_windows: int = 64
    quantizer: QuantConfig = PROBE_QUANTIZER
    prefix: PrefixConfig = PROBE_PREFIX

    def __post_init__(self) -> None:
        check(self.from_step >= 0, f"{QUANT_KEY}.from_step", f"must be >= 0, got {self.from_step}")
        check(
            self.eval_windows >= 1,
            f"{QUANT_KEY}.eval_windows",
            f"must be >= 1, got {self.eval_windows}",
        )
        check(
            self.prefix.bos_id is None,
            f"{QUANT_KEY}.prefix.bos_id",
            "is filled from the tokenizer; leave it out",
        )
        try:
            self.prefix.check_budget(self.quantizer.calibration_batches)
        except ConfigError as err:  # the key under this section
            raise ConfigError(f"{QUANT_KEY}.prefix.search_batches", _message(err)) from None

    @classmethod
    def from_dict(cls, values: Any, section: str = QUANT_KEY) -> ProbeQuantConfig:
        """Build from a mapping in either layout (`nest_quant`); keys it leaves out keep the
        probe's defaults, nested ones included. Errors name `{section}.<key>`."""
        try:
            return from_mapping(cls, merge(cls().to_dict(), nest_quant(values)), section)
        except ConfigError as err:  # a check of __post_init__ names the training key
            if section == QUANT_KEY or not err.key.startswith(QUANT_KEY + "."):
                raise
            key = section + err.key.removeprefix(QUANT_KEY)
            raise ConfigError(key, _message(err)) from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "from_step": self.from_step,
            "eval_windows": self.eval_windows,
            "quantizer": self.quantizer.to_dict(),
            "prefix": {k: v for k, v in self.prefix.to_dict().items() if k != "bos_id"},
        }

    def prefix_for(self, bos_id: int | None) -> PrefixConfig:
        """The `PrefixConfig` with the tokenizer's BOS filled in."""
        return PrefixConfig(**{**self.prefix.to_dict(), "bos_id": bos_id})

    def due(self, step: int, max_steps: int, log_spaced_until: int, every: int) -> bool:
        """Whether the probe at `step` also runs this evaluation: the first and last steps, and
        the probe steps from `from_step` on that are powers of two (all checkpoints by default)."""
        if step in (0, max_steps):
            return True
        power = step >= self.from_step and step & (step - 1) == 0
        return power and is_scheduled(step, max_steps, log_spaced_until, every)

    def check_bos(self, bos_id: int | None, key: str = QUANT_KEY) -> None:
        """The `bos` prefix needs a BOS token: checked before any work, naming
        `{key}.prefix.prefixes`."""
        try:
            self.prefix_for(bos_id).check_bos()
        except ConfigError as err:
            raise ConfigError(f"{key}.prefix.prefixes", _message(err)) from None

    def check_fits(self, window: int, room: int | None, key: str = QUANT_KEY) -> None:
        """A prefix plus a window must fit the model (`room`: model.max_seq_len minus its sink
        tokens; None: no limit): checked before any work, naming `{key}.prefix.max_len`."""
        max_len = self.prefix.max_len
        if self.prefix.prefixes and room is not None and max_len + window > room:
            raise ConfigError(
                f"{key}.prefix.max_len",
                f"a {max_len}-token prefix plus {window}-token windows needs "
                f"{max_len + window} positions; the model has {room}",
            )

    def evaluate(
        self,
        model: Any,
        eval_ids: Any,
        calib: Sequence[Any],
        bos_id: int | None,
        key: str = QUANT_KEY,
    ) -> pd.DataFrame:
        """The rows: `w8a8_eval`, or `prefix_eval` (the same rows plus `quant/prefix/*`) when
        prefixes are asked for. The one path the callback and sinklab-analyze share; a bad
        input is a ConfigError naming `{key}.<section>.<field>` (sinklab-analyze passes `quant`)."""
        try:
            if not self.prefix.prefixes:
                return w8a8_eval(model, eval_ids, list(calib), self.quantizer)
            return prefix_eval(
                model, eval_ids, list(calib), self.quantizer, self.prefix_for(bos_id)
            )
        except ConfigError as err:
            raise ConfigError(_rekey(err.key, key), _message(err)) from None


def nest_quant(values: Any) -> dict[str, Any]:
    """A quant mapping in the nested layout: keys of a nested section found at the top (the
    layout of runs saved before the sections, and of `sinklab-analyze quant.bits=4`) move
    into their section; a key given both ways keeps the nested value."""
    values = dict(plain(values) or {})
    out: dict[str, Any] = {}
    moved: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        section = section_of(str(key))
        if section is None:
            out[key] = value
        else:
            moved.setdefault(section, {})[key] = value
    for section, flat in moved.items():
        nested = out.get(section)
        out[section] = {**flat, **(dict(nested) if isinstance(nested, Mapping) else {})}
    return out


def section_of(key: str) -> str | None:
    """The nested section holding `key` (`bits` -> `quantizer`), or None for a top-level key."""
    if key in {f.name for f in fields(ProbeQuantConfig)}:
        return None
    for name, cls in SECTIONS.items():
        if key in {f.name for f in fields(cls)}:
            return name
    return None


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `over` on top, mappings merged key by key (a nested section given in part
    keeps the rest of `base`'s)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _rekey(err_key: str, key: str) -> str:
    """An evaluation error's key (`quant.modes`, `prefix.bos_id`) under `key`'s sections."""
    head, _, leaf = err_key.rpartition(".")
    if leaf == "bos_id":  # bos_id comes from the tokenizer: the prefix asked for is the cause
        return f"{key}.prefix.prefixes"
    section = "prefix" if head.endswith("prefix") else section_of(leaf)
    return f"{key}.{section}.{leaf}" if section else f"{key}.{leaf}"


def _message(err: ConfigError) -> str:
    return str(err).removeprefix(f"{err.key}: ")
