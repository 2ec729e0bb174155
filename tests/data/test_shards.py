"""storage=shards: every document once, in order, outside the validation split; a cache key
that reads no text; resume after an interruption; the step-indexed batch guarantees; and the
bad inputs, each refused in one line that names the file or key."""

from __future__ import annotations

import errno
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sinklab.data import documents, shards
from sinklab.data.config import DataConfig
from sinklab.data.run_data import RunData
from sinklab.data.sampling import BlockSampler
from sinklab.data.tokenizer import shard_tokenizer
from sinklab.errors import ConfigError

EOS = 257  # ByteTokenizer: bytes 0..255, <bos> 256, <eos> 257, <pad> 258


def _docs(n_files: int = 3, per_file: int = 40) -> list[list[str]]:
    """Distinct documents: `f<file> d<doc>` plus a body of a length that varies."""
    return [
        [f"f{f} d{d} " + "abcdefghij"[d % 10] * (20 + (7 * d) % 50) for d in range(per_file)]
        for f in range(n_files)
    ]


def _write(folder: Path, files: list[list[str]]) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, docs in enumerate(files):
        path = folder / f"part-{i}.jsonl"
        path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs))
        paths.append(path)
    return paths


def _cfg(tmp: Path, **over: Any) -> DataConfig:
    raw: dict[str, Any] = {
        "source": "text_files",
        "storage": "shards",
        "seq_len": 16,
        "batch_size": 4,
        "val_batches": 1,
        "cache_dir": str(tmp / "cache"),
        "tokenizer": {"kind": "byte"},
        "text_files": {"paths": [str(tmp / "corpus" / "*.jsonl")]},
        "shards": {"val_documents": 5, "workers": 1},
        "probe": {"n_windows": 3, "seq_len": 12},
    }
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return DataConfig.from_dict(raw)


def _packed(docs: list[str]) -> list[int]:
    out: list[int] = []
    for d in docs:
        out.extend(d.encode())
        out.append(EOS)
    return out


def _build(cfg: DataConfig) -> RunData:
    data = RunData(cfg)
    data.progress = False
    data.build()
    return data


def _train_tokens(data: RunData) -> list[int]:
    sset = data.batches.shards
    return [int(t) for i in range(len(sset.files)) for t in sset._map(i)]


@pytest.fixture
def corpus(tmp_path: Path) -> list[list[str]]:
    files = _docs()
    _write(tmp_path / "corpus", files)
    return files


@pytest.mark.parametrize("workers", [1, 2])
def test_every_document_once_in_source_order_validation_first(
    tmp_path: Path, corpus: list[list[str]], workers: int
) -> None:
    data = _build(_cfg(tmp_path, shards={"workers": workers}))
    flat = [d for f in corpus for d in f]
    assert np.load(data.batches.files["val"]).tolist() == _packed(flat[:5])
    assert _train_tokens(data) == _packed(flat[5:])  # the held-out documents never appear
    assert data.cache_hit is False


def test_second_start_reads_no_text_and_a_changed_file_invalidates(
    tmp_path: Path, corpus: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _build(_cfg(tmp_path))
    batch = first.batch_at(3)

    def no_reading(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the corpus was read on a cache hit")

    with monkeypatch.context() as m:
        m.setattr(documents, "iter_batches", no_reading)
        again = _build(_cfg(tmp_path))
    assert again.cache_hit is True
    assert all((again.batch_at(3)[k] == batch[k]).all() for k in batch)
    # one more document in the last file: new size and mtime, so a new key and new shards
    path = tmp_path / "corpus" / "part-2.jsonl"
    path.write_text(path.read_text() + json.dumps({"text": "a brand new document"}) + "\n")
    changed = _build(_cfg(tmp_path))
    assert changed.cache_hit is False
    assert changed.batches.shards.folder != first.batches.shards.folder
    assert _train_tokens(changed)[-21:] == _packed(["a brand new document"])


def test_an_interrupted_preparation_resumes_at_the_unfinished_unit(
    tmp_path: Path, corpus: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(tmp_path)
    real = documents.iter_batches
    calls: list[int] = []

    def dies_on_unit_2(cfg: DataConfig, unit: documents.Unit, limit: int | None = None) -> Any:
        calls.append(unit.index)
        for i, batch in enumerate(real(cfg, unit, limit)):
            if unit.index == 2 and i == 0:
                yield batch[:3]
                raise KeyboardInterrupt  # killed mid-unit
            yield batch

    monkeypatch.setattr(documents, "iter_batches", dies_on_unit_2)
    with pytest.raises(KeyboardInterrupt):
        _build(cfg)
    folder = shards.shard_folder(cfg, shard_tokenizer(cfg))
    assert sorted(p.name for p in folder.glob("train-*")) == [
        "train-00000.bin",
        "train-00000.json",
        "train-00001.bin",
        "train-00001.json",
    ]  # no half shard under a final name
    assert not (folder / "manifest.json").exists()
    monkeypatch.setattr(documents, "iter_batches", real)
    resumed = _build(cfg)
    flat = [d for f in corpus for d in f]
    assert _train_tokens(resumed) == _packed(flat[5:])


def test_a_truncated_shard_is_prepared_again_alone(
    tmp_path: Path, corpus: list[list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = _cfg(tmp_path)
    data = _build(cfg)
    folder = data.batches.shards.folder
    keep = (folder / "train-00000.bin").stat().st_mtime_ns
    with open(folder / "train-00001.bin", "r+b") as fh:
        fh.truncate(10)
    with pytest.raises(ConfigError, match=r"data.cache_dir: shard .*train-00001.bin is truncated"):
        shards.ShardSet(folder, 17)
    again = _build(cfg)
    assert "train-00001.bin is damaged" in caplog.text
    assert (folder / "train-00000.bin").stat().st_mtime_ns == keep  # nothing else redone
    assert _train_tokens(again) == _train_tokens(data)


def test_verify_finds_a_flipped_byte(tmp_path: Path, corpus: list[list[str]]) -> None:
    cfg = _cfg(tmp_path)
    folder = _build(cfg).batches.shards.folder
    with open(folder / "train-00002.bin", "r+b") as fh:
        fh.seek(5)
        fh.write(b"Z")
    assert shards.verify(folder) == [str(folder / "train-00002.bin")]
    assert not (folder / "train-00002.json").exists()  # the next preparation redoes it
    assert shards.verify(folder) == []


def test_batches_are_step_indexed_disjoint_per_rank_and_never_repeat_before_exhaustion(
    tmp_path: Path, corpus: list[list[str]]
) -> None:
    data = _build(_cfg(tmp_path))
    batches = data.batches
    n = batches.shards.n_blocks
    world, per_batch = 2, 4
    steps = n // (world * per_batch)
    seen: dict[int, list[int]] = {0: [], 1: []}
    for step in range(steps):
        for rank in range(world):
            g = step * world + rank
            seen[rank].extend(batches.sampler.blocks(g * per_batch, per_batch).tolist())
    assert not set(seen[0]) & set(seen[1])  # disjoint per rank
    everything = seen[0] + seen[1]
    assert len(everything) == len(set(everything))  # no block twice before all are read
    # the tokens of a batch are those blocks, read from the shards
    rows = batches.shards.blocks(batches.sampler.blocks(0, per_batch))
    assert (data.batch_at(0)["input_ids"].numpy() == rows[:, :-1]).all()
    assert (data.batch_at(0)["targets"].numpy() == rows[:, 1:]).all()
    # a fresh build (a resume) gives the same batch at any step
    again = _build(_cfg(tmp_path))
    for step in (0, 5, 123):
        a, b = data.batch_at(step, 1, 2), again.batch_at(step, 1, 2)
        assert all((a[k] == b[k]).all() for k in a)


def test_block_sampler_covers_every_block_each_epoch() -> None:
    sampler = BlockSampler(10, seed=3)
    ids = sampler.blocks(0, 30)
    for epoch in range(3):
        assert sorted(ids[10 * epoch : 10 * epoch + 10].tolist()) == list(range(10))
    assert ids[:10].tolist() != ids[10:20].tolist()  # a new order each epoch
    assert (sampler.blocks(7, 5) == ids[7:12]).all()  # a pure function of the sample index


def test_missing_field_names_the_file_and_row(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    rows = [{"text": "one"}, {"text": "two"}, {"body": "no text here"}]
    (folder / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ConfigError) as err:
        _build(_cfg(tmp_path))
    assert str(err.value).startswith("data.text_files.text_field: 'text' is missing from row 3 of")
    assert "a.jsonl" in str(err.value) and "\n" not in str(err.value)


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(b"this is not parquet")
    cfg = _cfg(tmp_path, text_files={"paths": [str(folder / "*.parquet")]})
    with pytest.raises(ConfigError) as err:
        _build(cfg)
    assert str(err.value).startswith("data.text_files.paths: cannot read")
    assert "a.parquet" in str(err.value) and "\n" not in str(err.value)


def test_a_corpus_smaller_than_one_window_is_refused(tmp_path: Path) -> None:
    _write(tmp_path / "corpus", [["tiny"] * 8])
    with pytest.raises(
        ConfigError,
        match=r"^data.seq_len: 16 needs 17 tokens per window but the training shards hold only 15 tokens",
    ):
        _build(_cfg(tmp_path))


def test_disk_full_names_the_shard_and_keeps_the_finished_ones(
    tmp_path: Path, corpus: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _cfg(tmp_path)
    real = shards._pack
    packed: list[int] = []

    def full_on_third(*args: Any) -> np.ndarray:
        packed.append(1)
        if len(packed) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*args)

    monkeypatch.setattr(shards, "_pack", full_on_third)  # val is pack 1, units 0, 1 then 2
    with pytest.raises(ConfigError) as err:
        _build(cfg)
    assert str(err.value).startswith("data.cache_dir: disk full while writing ")
    assert "train-00001.bin" in str(err.value)
    folder = shards.shard_folder(cfg, shard_tokenizer(cfg))
    assert (folder / "train-00000.json").is_file() and not (folder / "train-00001.bin").exists()
    monkeypatch.setattr(shards, "_pack", real)
    flat = [d for f in corpus for d in f]
    assert _train_tokens(_build(cfg)) == _packed(flat[5:])


def test_budget_states_epochs_and_refuses_repetition(
    tmp_path: Path, corpus: list[list[str]]
) -> None:
    data = _build(_cfg(tmp_path, max_epochs=1.0))
    corpus_tokens = data.batches.train_tokens
    assert corpus_tokens == data.batches.shards.n_blocks * 17
    ok = data.budget(steps=2, tokens_per_step=64)
    assert ok.epochs == pytest.approx(128 / corpus_tokens)
    assert "2 steps x 64" in ok.line() and "epochs" in ok.line()
    with pytest.raises(ConfigError) as err:
        data.budget(steps=10_000, tokens_per_step=64)
    assert str(err.value).startswith("data.max_epochs: the run reads 640.00k tokens")
    assert "from a 5.97k-token training split: 107.26 epochs" in str(err.value)
    assert corpus_tokens == 5967
    assert "above max_epochs=1.0" in str(err.value)
    with pytest.raises(
        ConfigError,
        match=r"^model.vocab_size: 200 is smaller than the tokenizer's vocabulary \(259\)",
    ):
        data.budget(steps=1, tokens_per_step=64, model_vocab=200)


@pytest.mark.parametrize(
    ("over", "key"),
    [
        ({"source": "shakespeare"}, "data.storage"),
        ({"bos": "document_start"}, "data.bos"),
        ({"tokenizer": {"kind": "char"}}, "data.tokenizer.kind"),
        ({"tokenizer": {"kind": "bpe"}}, "data.tokenizer.train_documents"),
        ({"tokenizer": {"kind": "pretrained"}}, "data.tokenizer.name"),
        ({"max_epochs": 0}, "data.max_epochs"),
    ],
)
def test_bad_shard_configs_name_the_key(tmp_path: Path, over: dict, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        _cfg(tmp_path, **over)
    assert str(err.value).startswith(f"{key}: ")


def test_prepare_cli_builds_reports_and_verifies(
    tmp_path: Path, corpus: list[list[str]], capsys: pytest.CaptureFixture
) -> None:
    from sinklab.data.prepare import main

    args = ["--data", "text_files", "--cache-dir", str(tmp_path / "cache"), "storage=shards"]
    args += [f"text_files.paths=[{tmp_path / 'corpus' / '*.jsonl'}]", "tokenizer.kind=byte"]
    args += ["shards.val_documents=5", "shards.workers=2", "seq_len=16"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "cache hit   False" in out and "3 shards in" in out
    assert f"train       {len(_packed([d for f in corpus for d in f][5:])):,} tokens" in out
    assert main([*args, "--verify"]) == 0
    out = capsys.readouterr().out
    assert "cache hit   True" in out and "damaged" not in out


def test_pretrained_tokenizer_from_a_local_tokenizer_json(
    tmp_path: Path, corpus: list[list[str]]
) -> None:
    """A GPT-2-style tokenizer.json (its own <|endoftext|>, no pad) read by kind=pretrained:
    its ids, not ours, fill the shards, and the id that ends a document is its EOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([d for f in corpus for d in f], trainer=trainer)
    path = tmp_path / "gpt2ish" / "tokenizer.json"
    path.parent.mkdir()
    tok.save(str(path))
    for name in (str(path), str(path.parent)):  # the file, or the folder holding it
        data = _build(_cfg(tmp_path, tokenizer={"kind": "pretrained", "name": name}))
        eos = tok.token_to_id("<|endoftext|>")
        assert (data.eos_id, data.bos_id, data.pad_id) == (eos, eos, None)
        flat = [d for f in corpus for d in f][5:]
        expected = [i for d in flat for i in [*tok.encode(d).ids, eos]]
        assert _train_tokens(data) == expected


def test_pretrained_hub_id_offline_is_one_line(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, tokenizer={"kind": "pretrained", "name": "no-such-org/no-such-tok"})
    with pytest.raises(ConfigError) as err:
        shard_tokenizer(cfg)
    assert str(err.value).startswith("data.tokenizer.name: cannot load 'no-such-org/no-such-tok'")
    assert "\n" not in str(err.value)


def test_bpe_trains_on_a_bounded_sample_after_the_validation_documents(
    tmp_path: Path, corpus: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sinklab.data import tokenizer as tokenizer_mod

    seen: list[list[str]] = []
    real = tokenizer_mod.train_bpe

    def spy(docs: list[str], *args: Any) -> Any:
        seen.append(list(docs))
        return real(docs, *args)

    monkeypatch.setattr(tokenizer_mod, "train_bpe", spy)
    cfg = _cfg(tmp_path, tokenizer={"kind": "bpe", "vocab_size": 300, "train_documents": 50})
    first = _build(cfg)
    flat = [d for f in corpus for d in f]
    assert seen == [flat[5:55]]  # 50 training documents: 35 of file 0, then 15 of file 1
    _build(cfg)
    assert len(seen) == 1  # cached under the source's identity
    assert first.vocab_size == 300


def test_gu60m_composes_to_5b_tokens_and_refuses_a_corpus_it_would_repeat(
    tmp_path: Path, corpus: list[list[str]]
) -> None:
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    conf = Path(__file__).resolve().parents[2] / "conf"
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = OmegaConf.to_container(compose("train", ["scale=gu60m"]), resolve=True)
    data, trainer = cfg["data"], cfg["trainer"]
    per_step = data["batch_size"] * data["seq_len"] * trainer["accumulate_grad_batches"]
    assert 4.95e9 < trainer["max_steps"] * per_step < 5.05e9  # Gu et al.'s 5B tokens
    assert (data["storage"], data["max_epochs"], data["hf_dataset"]["max_documents"]) == (
        "shards",
        1.0,
        None,
    )
    # the same data settings on a small local corpus: refused before any step
    local = _build(_cfg(tmp_path, max_epochs=data["max_epochs"]))
    with pytest.raises(ConfigError, match=r"^data.max_epochs: the run reads 5.00B tokens"):
        local.budget(trainer["max_steps"], per_step)


@pytest.mark.parametrize("max_documents", [None, 70])
def test_a_local_hf_dataset_streams_shard_by_shard(
    tmp_path: Path, corpus: list[list[str]], max_documents: int | None
) -> None:
    """`datasets`' json builder through hf_dataset: one unit per file (its shards), or one
    ordered stream capped at max_documents (the validation documents count towards it)."""
    files = sorted(str(p) for p in (tmp_path / "corpus").glob("*.jsonl"))
    cfg = _cfg(
        tmp_path,
        source="hf_dataset",
        hf_dataset={"name": "json", "data_files": files, "max_documents": max_documents},
        shards={"workers": 2},
    )
    data = _build(cfg)
    flat = [d for f in corpus for d in f]
    expected = flat[5:] if max_documents is None else flat[5:max_documents]
    assert _train_tokens(data) == _packed(expected)
    assert len(data.batches.shards.files) == (3 if max_documents is None else 1)


def test_workers_started_ahead_do_the_preparation_and_a_cache_hit_ends_them(
    tmp_path: Path, corpus: list[list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[int] = []
    new_pool = shards._new_pool
    monkeypatch.setattr(shards, "_new_pool", lambda n: made.append(n) or new_pool(n))
    ahead = _cfg(tmp_path, shards={"workers": 2})
    shards.start_workers(ahead)
    pool, _ = shards._EARLY[2]
    workers = list(pool._pool)
    data = _build(ahead)
    assert made == [2] and shards._EARLY == {}  # the pool started ahead did the work
    assert all(not w.is_alive() for w in workers)
    alone = _build(_cfg(tmp_path, cache_dir=str(tmp_path / "alone"), shards={"workers": 1}))
    assert _train_tokens(data) == _train_tokens(alone)
    shards.start_workers(ahead)  # a second start: a hit, the unused pool is ended
    pool, _ = shards._EARLY[2]
    workers = list(pool._pool)
    assert _build(ahead).cache_hit
    assert shards._EARLY == {} and all(not w.is_alive() for w in workers)
