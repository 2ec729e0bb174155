"""Training from prepared shards with 2 DDP ranks on the CPU (gloo), through the real CLI:
the ranks read disjoint windows (two ranks of batch 4 train exactly what one process of
batch 8 does) and no window is read twice before every window has been read; and a run
resumed mid-way ends with the weights of an uninterrupted one. `slow`: ~3 min each."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from sinklab.runs.checkpoints import list_checkpoints, load_checkpoint_state
from sinklab.training.datamodule import SinkDataModule
from sinklab.training.run_config import validate_config
from tests.reliability.helpers import run_cli
from tests.training.conftest import compose_train, tiny_overrides

STEPS = 6
DDP = ["trainer=ddp_cpu", "data.batch_size=4", "data.val_batches=4"]
SINGLE = ["trainer.devices=1", "data.batch_size=8", "data.val_batches=2"]
COMMON = [
    "trainer.threads=1",
    "trainer.deterministic=true",
    "callbacks.checkpoint.log_spaced_until=2",
    "callbacks.checkpoint.full_every=2",
    "callbacks.probe.stream.enabled=false",
]


def _shard_data(tmp: Path) -> list[str]:
    """A jsonl corpus of distinct documents, prepared into 4 shards (one per file)."""
    corpus = tmp / "corpus"
    if not corpus.exists():
        corpus.mkdir()
        words = ["sink", "token", "attention", "head", "value", "norm", "the", "a", "of"]
        gen = torch.Generator().manual_seed(0)
        for f in range(4):
            rows = []
            for d in range(60):
                picks = torch.randint(
                    len(words), (int(torch.randint(8, 30, (1,), generator=gen)),), generator=gen
                )
                rows.append(
                    json.dumps({"text": f"doc {f}-{d}: " + " ".join(words[i] for i in picks)})
                )
            (corpus / f"part-{f}.jsonl").write_text("\n".join(rows) + "\n")
    return [
        "data=text_files",
        "data.storage=shards",
        f"data.text_files.paths=[{corpus}/*.jsonl]",
        "data.tokenizer.kind=byte",
        "data.shards.val_documents=20",
        "data.shards.workers=2",
    ]


def _run(tmp: Path, extra: list[str], run_dir: Path) -> None:
    args = tiny_overrides(tmp, STEPS) + _shard_data(tmp) + COMMON + extra
    args += [f"paths.output_dir={tmp / 'out'}", f"hydra.run.dir={run_dir}"]
    proc = run_cli(args, tmp, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint_state(ckpt)["state_dict"]


@pytest.mark.slow
def test_two_ranks_from_shards_read_disjoint_halves_and_never_repeat(tmp_path: Path) -> None:
    ddp_dir, one_dir = tmp_path / "ddp", tmp_path / "one"
    _run(tmp_path, DDP, ddp_dir)
    _run(tmp_path, SINGLE, one_dir)

    # the data the ranks read: disjoint, and no window twice before all are read
    run = validate_config(compose_train(tiny_overrides(tmp_path) + _shard_data(tmp_path) + DDP))
    dm = SinkDataModule(run.data)
    dm.setup("fit")
    n = dm.batches.shards.n_blocks
    per_rank = {r: dm.batches.sampler.blocks(0, 0) for r in (0, 1)}
    for step in range(STEPS):
        for r in (0, 1):
            g = step * 2 + r
            per_rank[r] = torch.cat(
                [torch.as_tensor(per_rank[r]), torch.as_tensor(dm.batches.sampler.blocks(g * 4, 4))]
            )
    assert not set(per_rank[0].tolist()) & set(per_rank[1].tolist())
    first_epoch = dm.batches.sampler.blocks(0, n).tolist()
    assert sorted(first_epoch) == list(range(n))

    summary = json.loads((ddp_dir / "summary.json").read_text())
    assert summary["epochs_seen"] == pytest.approx(
        STEPS * 8 * 32 / dm.batches.train_tokens, abs=1e-4
    )

    # two ranks of 4 train exactly what one process of 8 does: the ranks read the two halves
    ddp_ckpts, one_ckpts = list_checkpoints(ddp_dir), list_checkpoints(one_dir)
    assert [c.step for c in ddp_ckpts] == [c.step for c in one_ckpts]
    for a, b in zip(ddp_ckpts, one_ckpts, strict=True):
        wa, wb = _weights(a.path), _weights(b.path)
        for key in wa:
            torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_run_from_shards_resumed_mid_way_ends_with_the_uninterrupted_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped after step 3 and resumed from its last.ckpt (full state every 3 steps), a run
    reads the same batches as one that never stopped: the same final weights, bit for bit."""
    from sinklab.training.module import SinkLabModule
    from sinklab.training.run import train

    base = tiny_overrides(tmp_path, STEPS) + _shard_data(tmp_path) + SINGLE + COMMON
    base += ["callbacks.checkpoint.full_every=3"]
    full_dir, part_dir = tmp_path / "full", tmp_path / "part"
    full_dir.mkdir()
    part_dir.mkdir()
    train(validate_config(compose_train(base)), full_dir)
    original = SinkLabModule.on_train_batch_end

    def stop_after_step_3(self, outputs, batch, batch_idx):  # noqa: ANN001, ANN202
        original(self, outputs, batch, batch_idx)
        if self.global_step == 3:
            self.trainer.should_stop = True

    with monkeypatch.context() as patch:
        patch.setattr(SinkLabModule, "on_train_batch_end", stop_after_step_3)
        train(validate_config(compose_train(base)), part_dir)
    last = part_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 3
    train(validate_config(compose_train(base + [f"ckpt_path={last}"])), part_dir)
    a = _weights(full_dir / "checkpoints" / "last.ckpt")
    b = _weights(part_dir / "checkpoints" / "last.ckpt")
    for key in a:
        assert torch.equal(a[key], b[key]), key
