"""`sinklab-analyze` / `python -m sinklab.analyze`: the Hydra entry point for reanalysis.

Examples:
    sinklab-analyze target=outputs/runs/<run>
    sinklab-analyze target=outputs/multirun/<sweep> steps=log device=cuda
    sinklab-analyze target=outputs/runs/<run>/checkpoints/step0000512-tokens2097152.ckpt force=true
    sinklab-analyze target=smollm2 n_windows=100 seq_len=64 bos=none

Options are in conf/analyze.yaml. A bad option or target prints one line and exits with 2.
"""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from sinklab.configs import CONF_DIR
from sinklab.errors import ConfigError


def run(cfg: DictConfig) -> list:
    """Validate, analyse, print where the tables went; ConfigError -> one line, exit 2."""
    from sinklab.reanalysis import analyze, from_mapping

    try:
        if OmegaConf.is_missing(cfg, "target"):
            raise ConfigError(
                "target",
                "required: a run or multirun folder, a .ckpt file, hf:<folder>, gguf:<file> or smollm2",
            )
        acfg = from_mapping(cfg)
        reports = analyze(acfg)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    for r in reports:
        print(
            f"{r.name}: measured {len(r.measured)}, already measured {len(r.skipped)}, "
            f"unreadable {len(r.failed)} -> {r.table} (+ .csv)",
            flush=True,
        )
    return reports


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="analyze")
def _hydra_main(cfg: DictConfig) -> None:
    run(cfg)


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
