"""`sinklab-analyze` / `python -m sinklab.analyze`: the Hydra entry point for reanalysis.

Examples:
    sinklab-analyze target=outputs/runs/<run>
    sinklab-analyze target=outputs/multirun/<sweep> steps=log device=cuda
    sinklab-analyze target=outputs/runs/<run>/checkpoints/step0000512-tokens2097152.ckpt force=true
    sinklab-analyze target=smollm2 n_windows=100 seq_len=64 bos=none

Options are in conf/analyze.yaml. A bad option or target, or a mistyped key (`targte=...`),
prints one line (with the nearest valid names) and exits with 2, as in sinklab-train.
The flat `quant.*` keys of command lines written before `quant` had its `quantizer` and
`prefix` sections (`quant.bits=4 'quant.prefixes=[bos]'`) are read as the nested keys.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from sinklab.configs import CONF_DIR, run_hydra
from sinklab.errors import ConfigError


def run(cfg: DictConfig) -> list:
    """Validate, analyse, print where the tables went; ConfigError -> one line, exit 2."""
    from sinklab.reanalysis import analyze, from_mapping

    try:
        if OmegaConf.is_missing(cfg, "target"):
            raise ConfigError(
                "target",
                "required: a run or multirun folder, a .ckpt file, hf:<folder>, hf:<org>/<name>, "
                "gguf:<file>, smollm2 or gemma3",
            )
        acfg = from_mapping(cfg)
        reports = analyze(acfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    for r in reports:
        failed = f" ({', '.join(map(str, r.failed))})" if r.failed else ""
        print(
            f"{describe_target(r.name, str(cfg.target))}: measured {len(r.measured)}, "
            f"already measured {len(r.skipped)}, unreadable {len(r.failed)}{failed} -> "
            f"{r.table} (+ .csv)",
            flush=True,
        )
    return reports


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="analyze")
def _hydra_main(cfg: DictConfig) -> None:
    run(cfg)


_QUANT_KEY = re.compile(r"^(?P<op>[+~]{0,2})quant\.(?P<key>\w+)(?P<rest>=.*)?$")


def nested_overrides(args: list[str]) -> list[str]:
    """`args` with each flat quant override (`quant.bits=4`) moved to its section
    (`quant.quantizer.bits=4`); every other argument unchanged."""
    out = []
    for arg in args:
        m = _QUANT_KEY.match(arg)
        if m is not None:
            from sinklab.analysis.quant_eval import section_of

            section = section_of(m["key"])
            if section is not None:
                arg = f"{m['op']}quant.{section}.{m['key']}{m['rest'] or ''}"
        out.append(arg)
    return out


def describe_target(name: str, target: str) -> str:
    """A report's name with the overrides of the run or sweep job it measured: `0
    (model.pos=alibi)` for a sweep job (its number: a job folder's name is the number, or the
    number and a shortened copy of the overrides), `<run> (model.pos=alibi)` for a run."""
    from sinklab.runs.layout import NO_OVERRIDES, job_label

    folder = Path(target)
    for run_dir in (folder / name, folder):
        if run_dir.name == name and (run_dir / ".hydra").is_dir():
            num = name.partition("_")[0]
            shown = num if num.isdigit() else name
            label = job_label(run_dir)
            return f"{shown} {label}" if label == NO_OVERRIDES else f"{shown} ({label})"
    return name


def main() -> None:
    """Run Hydra with the same one-line errors as sinklab-train (`configs.run_hydra`)."""
    sys.argv[1:] = nested_overrides(sys.argv[1:])
    run_hydra(_hydra_main, "analyze", "sinklab-analyze")


if __name__ == "__main__":
    main()
