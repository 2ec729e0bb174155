"""Measure SmolLM2-135M (or Gemma 3 270M, or another pretrained model sinklab converts) on Gu
et al.'s protocol and print the report: Sink_1 (eps 0.3, T 64, 100 windows, no BOS) and the
massive activations per layer.

    python scripts/pretrained_report.py                         # SmolLM2-135M, Shakespeare
    python scripts/pretrained_report.py --target gemma3 --fig-dir docs/figures --fig-prefix pretrained_ \\
        --batch-size 100    # all windows in one forward: the capture keeps 6.7 GB of logits
    python scripts/pretrained_report.py --fig-dir docs/figures --markdown /tmp/smollm2.md
    python scripts/pretrained_report.py --target gguf:/path/model.gguf --device cuda

The streaming table (StreamingLLM; every column on the same positions, the oracle at every
position) instead of the probe report, saved as per-position NLL and written into the doc's
`<!-- pretrained:smollm2_stream -->` block (42 min on the shared 2-core VM; resumes):

    python scripts/pretrained_report.py --stream --threads 2 --stream-len 2048 --cache-len 256 \
        --stream-nll outputs/analysis/smollm2_stream/stream_nll.npz \
        --write-doc docs/pretrained.md --block smollm2_stream
    # re-render the block from the saved NLL, measuring nothing:
    python scripts/pretrained_report.py --stream --from-nll outputs/analysis/smollm2_stream/stream_nll.npz \
        --write-doc docs/pretrained.md --block smollm2_stream
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from sinklab.analysis.streaming import StreamConfig
from sinklab.errors import ConfigError
from sinklab.reports.pretrained import (
    load_stream_nll,
    markdown,
    measure_stream,
    replace_block,
    run_report,
    stream_markdown,
)


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
    stream = ap.add_argument_group("streaming table (--stream)")
    stream.add_argument("--stream", action="store_true", help="the streaming table instead")
    stream.add_argument("--stream-len", type=int, default=2048, help="T, stream tokens")
    stream.add_argument("--cache-len", type=int, default=256, help="C, the current token included")
    stream.add_argument("--sink-counts", type=int, nargs="+", default=[1, 4])
    stream.add_argument(
        "--parts", type=int, default=16, help="oracle passes (interleaved; a power of 2)"
    )
    stream.add_argument("--subset-stride", type=int, default=16, help="the comparison column")
    stream.add_argument(
        "--stream-nll", type=Path, default=None, help="save per-position NLL (resumes from it)"
    )
    stream.add_argument("--from-nll", type=Path, default=None, help="render a saved NLL file")
    stream.add_argument("--write-doc", type=Path, default=None, help="doc holding the block")
    stream.add_argument("--block", default="smollm2_stream", help="<!-- pretrained:NAME -->")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.stream:
        try:
            return stream_main(args)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
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


def stream_main(args: argparse.Namespace) -> int:
    """Measure (or load) the per-position NLL, print the table, write the doc block."""
    if args.from_nll:
        result, _ = load_stream_nll(args.from_nll)
    else:
        cfg = StreamConfig(
            stream_len=args.stream_len,
            cache_len=args.cache_len,
            sink_counts=tuple(args.sink_counts),
            conditions=("dense", "window", "sinks", "recompute"),
            shift_modes=("shift", "noshift"),
            recompute_batch_size=args.batch_size or 128,
        )
        result = measure_stream(
            args.target, cfg, args.corpus, args.bos, args.device, args.stream_nll, args.parts
        )
    table = stream_markdown(result, args.subset_stride)
    print(table)
    if args.write_doc:
        text = args.write_doc.read_text(encoding="utf-8")
        args.write_doc.write_text(replace_block(text, args.block, table), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
