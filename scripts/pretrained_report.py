"""Measure SmolLM2-135M (or Gemma 3 270M, or another pretrained model sinklab converts) on Gu
et al.'s protocol and print the report: Sink_1 (eps 0.3, T 64, 100 windows, no BOS) and the
massive activations per layer.

    python scripts/pretrained_report.py                         # SmolLM2-135M, Shakespeare
    python scripts/pretrained_report.py --target gemma3 --fig-dir docs/figures --fig-prefix pretrained_ \\
        --batch-size 100    # all windows in one forward: the capture keeps 6.7 GB of logits
    python scripts/pretrained_report.py --fig-dir docs/figures --markdown /tmp/smollm2.md
    python scripts/pretrained_report.py --target gguf:/path/model.gguf --device cuda
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from sinklab.errors import ConfigError
from sinklab.reports.pretrained import markdown, run_report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--target", default="smollm2", help="smollm2 | gemma3 | hf:<folder> | gguf:<file>"
    )
    ap.add_argument(
        "--out-dir", type=Path, default=None, help="table folder (default outputs/analysis/<model>)"
    )
    ap.add_argument(
        "--fig-dir", type=Path, default=None, help="figure folder (default <out-dir>/figures)"
    )
    ap.add_argument(
        "--markdown", type=Path, default=None, help="also write the per-layer table here"
    )
    ap.add_argument(
        "--fig-prefix", default="", help="figure names: <prefix><model name>_<figure>.png"
    )
    ap.add_argument(
        "--map-layers",
        type=int,
        nargs="+",
        default=None,
        help="layers whose attention maps are drawn (default: the target's, see MAP_LAYERS)",
    )
    ap.add_argument("--batch-size", type=int, default=None, help="windows per forward (default 25)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--corpus", default="shakespeare")
    ap.add_argument("--n-windows", type=int, default=100)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--bos", default="none", choices=["none", "bos"])
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        summary, written = run_report(
            args.target,
            args.out_dir,
            args.fig_dir,
            args.device,
            args.corpus,
            args.n_windows,
            args.seq_len,
            args.bos,
            map_layers=tuple(args.map_layers) if args.map_layers else None,
            fig_prefix=args.fig_prefix,
            batch_size=args.batch_size,
        )
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    table = markdown(summary)
    print(
        f"{summary.name}: {summary.n_windows} windows x {summary.seq_len} tokens, bos={summary.bos}"
    )
    print(f"  Sink_1 (eps 0.3)      {summary.sink1_pct:.2f} %")
    print(f"  sink ratio (eps 0.3)  {summary.sink_ratio_pct:.2f} %")
    print(f"  first-token mass      {summary.first_token_mass:.3f}")
    print(table)
    if args.markdown:
        args.markdown.write_text(table + "\n", encoding="utf-8")
    for path in written:
        print(f"  figure {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
