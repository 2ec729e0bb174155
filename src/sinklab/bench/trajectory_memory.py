"""Memory over a checkpoint trajectory: does measuring 20 revisions leak a model per revision?

Builds a folder laid out as the Hugging Face hub cache holding `--revisions` step branches of a
random GPT-NeoX (Pythia's architecture, about `--hidden`-wide), points the hub client at it
offline, and runs `sinklab-analyze target=hf:<repo> revisions=log` in this process. Each
revision's peak RSS is read from the kernel's counter (VmHWM), reset as the revision's load
starts, so a model (or table) kept alive from one revision to the next shows as a rising peak.
The issue's target: the last revision's peak within 10 % of the second's.

    python -m sinklab.bench.trajectory_memory --revisions 20
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any

from sinklab.bench.stream_memory import reset_peak, status_kb

REPO = "bench-org/pythia-bench"


def revision_names(n: int) -> list[str]:
    """Pythia's names: step0, 1, 2, 4, ..., 512, then thousands, `n` in all."""
    names, step = ["step0"], 1
    while len(names) < n and step <= 512:
        names.append(f"step{step}")
        step *= 2
    thousands = 1000
    while len(names) < n:
        names.append(f"step{thousands}")
        thousands *= 2
    return names


def build_cache(cache: Path, revisions: list[str], hidden: int, layers: int) -> None:
    """models--<org>--<name>/{blobs, snapshots/<commit>, refs/<revision>}, one random model per
    revision (seeded by its index), with a small byte-level BPE tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM, PreTrainedTokenizerFast

    from sinklab.reanalysis.corpus_probe import corpus_documents

    raw = Tokenizer(models.BPE(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.train_from_iterator(
        corpus_documents("shakespeare")[:200],
        trainers.BpeTrainer(vocab_size=2048, special_tokens=["<unk>", "<s>"]),
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="<unk>", bos_token="<s>")
    config = GPTNeoXConfig(
        vocab_size=raw.get_vocab_size(),
        hidden_size=hidden,
        intermediate_size=4 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=max(1, hidden // 64),
        max_position_embeddings=2048,
        rotary_pct=0.25,
        use_parallel_residual=True,
    )
    repo = cache / ("models--" + REPO.replace("/", "--"))
    for i, revision in enumerate(revisions):
        commit = hashlib.sha1(revision.encode()).hexdigest()
        staged = cache.parent / "staged"
        torch.manual_seed(i)
        GPTNeoXForCausalLM(config).save_pretrained(staged)
        tokenizer.save_pretrained(staged)
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        for file in sorted(staged.iterdir()):
            data = file.read_bytes()
            blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
            blob.parent.mkdir(parents=True, exist_ok=True)
            blob.write_bytes(data)
            (snapshot / file.name).symlink_to(Path("../../blobs") / blob.name)
            file.unlink()
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / revision).write_text(commit)


def measure(n_revisions: int, hidden: int, layers: int, workdir: Path) -> list[dict[str, Any]]:
    """Per revision: RSS as its load starts and the peak RSS while it was measured (MB)."""
    cache = workdir / "hub"
    build_cache(cache, revision_names(n_revisions), hidden, layers)
    os.environ["HF_HUB_CACHE"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    from sinklab.reanalysis import corpus_probe, from_mapping
    from sinklab.reanalysis.runner import analyze

    loads: list[dict[str, Any]] = []
    real_load = corpus_probe.load_pretrained

    def watched_load(kind: str, path: Any, cache_dir: str | None = None) -> Any:
        if loads:
            loads[-1]["peak_mb"] = status_kb("VmHWM") / 1024
        loads.append({"revision": Path(path).name[:8], "start_mb": status_kb("VmRSS") / 1024})
        reset_peak()
        return real_load(kind, path, cache_dir)

    corpus_probe.load_pretrained = watched_load
    try:
        cfg = from_mapping(
            {
                "target": f"hf:{REPO}",
                "revisions": "log",
                "out_dir": str(workdir / "out"),
                "progress": False,
            }
        )
        analyze(cfg)
    finally:
        corpus_probe.load_pretrained = real_load
    loads[-1]["peak_mb"] = status_kb("VmHWM") / 1024
    return loads


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--revisions", type=int, default=20, help="step branches (default 20)")
    parser.add_argument("--hidden", type=int, default=512, help="model width (default 512)")
    parser.add_argument("--layers", type=int, default=6, help="model depth (default 6)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        loads = measure(args.revisions, args.hidden, args.layers, Path(tmp))
    print("revision  rss at load (MB)  peak while measured (MB)")
    for i, row in enumerate(loads):
        print(f"{i:>8}  {row['start_mb']:>16.0f}  {row['peak_mb']:>24.0f}")
    second, last = loads[1]["peak_mb"], loads[-1]["peak_mb"]
    ratio = last / second
    verdict = "within" if abs(ratio - 1) <= 0.10 else "OUTSIDE"
    print(f"peak at the last revision / the second: {ratio:.3f} ({verdict} the 10 % target)")


if __name__ == "__main__":
    main()
