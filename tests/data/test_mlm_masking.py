"""Issue #17: BERT's masking as a pure seeded function, and the mask token in every tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sinklab.data.config import DataConfig
from sinklab.data.run_data import RunData
from sinklab.data.synthetic import IdTokenizer
from sinklab.data.tokenizer import ByteTokenizer, CharTokenizer, bpe_cache_path, build_tokenizer
from sinklab.data.windows import MaskSpec, mask_tokens

SPEC = MaskSpec(mask_id=11, vocab_size=12, special_ids=(10,))


def _ids(n: int = 400, t: int = 64) -> np.ndarray:
    ids = np.random.default_rng(1).integers(0, 10, size=(n, t))
    ids[:, 0] = 10  # BOS
    return ids


def test_masking_follows_bert_rates_and_never_touches_specials() -> None:
    ids = _ids()
    corrupted, targets, loss_mask = mask_tokens(ids, SPEC, np.random.default_rng(0))
    assert np.array_equal(targets, ids)  # the original token, not shifted
    assert not loss_mask[:, 0].any() and np.array_equal(corrupted[:, 0], ids[:, 0])
    assert np.array_equal(corrupted[~loss_mask], ids[~loss_mask])  # unchosen stay clean
    chosen = loss_mask[:, 1:].mean()
    assert abs(chosen - 0.15) < 0.01  # 25,200 maskable tokens: 3 sigma is about 0.007
    picked = corrupted[loss_mask]
    as_mask = (picked == SPEC.mask_id).mean()
    kept = (picked == ids[loss_mask]).mean()  # kept, or a random draw that hit the original
    assert abs(as_mask - 0.8) < 0.03
    assert abs(kept - (0.1 + 0.1 / 10)) < 0.02
    assert set(np.unique(picked)) <= set(range(10)) | {SPEC.mask_id}  # never BOS as a random draw


def test_masking_is_a_pure_function_of_the_generator() -> None:
    ids = _ids(8, 32)
    a = mask_tokens(ids, SPEC, np.random.default_rng([3, 7]))
    b = mask_tokens(ids, SPEC, np.random.default_rng([3, 7]))
    c = mask_tokens(ids, SPEC, np.random.default_rng([3, 8]))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[2], c[2])


def test_a_batch_always_has_one_masked_position() -> None:
    ids = np.array([[10, 3]])
    spec = MaskSpec(mask_id=11, vocab_size=12, special_ids=(10,), probability=1e-9)
    _, _, loss_mask = mask_tokens(ids, spec, np.random.default_rng(0))
    assert loss_mask.tolist() == [[False, True]]


def test_mlm_batches_are_deterministic_and_clm_batches_unchanged(tmp_path: Path) -> None:
    base = {"source": "synthetic", "seq_len": 16, "batch_size": 4, "bos": "every_window"}
    base["synthetic"] = {"kind": "zipf", "vocab_size": 20}
    clm = RunData(DataConfig.from_dict(base))
    mlm = RunData(DataConfig.from_dict({**base, "objective": "mlm"}))
    clm.build()
    mlm.build()
    assert (clm.vocab_size, mlm.vocab_size) == (21, 22)  # 20 regular + BOS (+ mask)
    assert mlm.batches.mask is not None and mlm.batches.mask.mask_id == 21
    a, b = mlm.batch_at(3), mlm.batch_at(3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    plain = clm.batch_at(3)
    assert np.array_equal(a["targets"], plain["input_ids"])  # same windows, original tokens
    assert not np.array_equal(a["loss_mask"], plain["loss_mask"])
    val = mlm.batches.val_batches()
    assert all(v["loss_mask"].any() for v in val)


def test_every_tokenizer_gets_a_mask_token_for_mlm_only(tmp_path: Path) -> None:
    assert ByteTokenizer().mask_id is None and ByteTokenizer().vocab_size == 259
    byte = ByteTokenizer(mask=True)
    assert (byte.mask_id, byte.vocab_size, byte.decode([104, 259])) == (259, 260, "h<mask>")
    assert ByteTokenizer().fingerprint() != byte.fingerprint()
    char = CharTokenizer("ab", ("<bos>", "<eos>", "<pad>", "<mask>"))
    assert (char.mask_id, char.bos_id, char.decode([0, 5])) == (5, 2, "a<mask>")
    assert IdTokenizer(4, mask=True).decode([4, 5, 1]) == "<bos> <mask> 1"

    docs = [f"document {i}: the quick brown fox jumps over the lazy dog." for i in range(30)]
    cfgs = {
        obj: DataConfig.from_dict(
            {"cache_dir": str(tmp_path), "objective": obj, "tokenizer": {"vocab_size": 300}}
        )
        for obj in ("clm", "mlm")
    }
    assert bpe_cache_path(cfgs["clm"], docs) != bpe_cache_path(cfgs["mlm"], docs)
    clm, mlm = (build_tokenizer(cfgs[o], docs, docs) for o in ("clm", "mlm"))
    assert clm.mask_id is None and mlm.mask_id == 3
    assert (mlm.bos_id, mlm.eos_id, mlm.pad_id) == (clm.bos_id, clm.eos_id, clm.pad_id)
    assert mlm.encode("document") != [] and mlm.fingerprint() != clm.fingerprint()


def test_loss_tokens_per_batch_counts_the_masked_positions_of_an_encoder() -> None:
    base = {"source": "synthetic", "seq_len": 64, "batch_size": 8, "bos": "every_window"}
    base["synthetic"] = {"kind": "zipf", "vocab_size": 20}
    mlm = RunData(DataConfig.from_dict({**base, "objective": "mlm"}))
    mlm.build()
    counts = [int(mlm.batch_at(i)["loss_mask"].sum()) for i in range(8)]
    assert mlm.loss_tokens_per_batch() == round(sum(counts) / 8)
    # BERT's 15 % of the 8 x 63 maskable positions (BOS never), not every position
    assert 0.08 * 8 * 63 < mlm.loss_tokens_per_batch() < 0.25 * 8 * 63


def test_random_first_token_of_an_encoder_is_never_the_mask(make_cfg) -> None:
    # Under mlm the mask id is special: a window opening with it would show the model a mask
    # where nothing was hidden. 512 synthetic and 4,096 byte draws: with the mask allowed, the
    # chance it never came up would be 1e-11 and 1e-7.
    base = {"source": "synthetic", "seq_len": 16, "batch_size": 64, "bos": "none"}
    base["synthetic"] = {"kind": "zipf", "vocab_size": 20}
    synthetic = RunData(DataConfig.from_dict({**base, "objective": "mlm", "first_token": "random"}))
    synthetic.build()
    first = np.concatenate([synthetic.batch_at(i)["targets"][:, 0] for i in range(8)])
    assert set(first.tolist()) == set(range(20))  # every regular token, and only those

    text = RunData(make_cfg(objective="mlm", first_token="random", batch_size=64))
    text.build()
    mask_id = text.batches.mask.mask_id
    first = np.concatenate([text.batch_at(i)["targets"][:, 0] for i in range(64)])
    assert mask_id == 259 and first.max() < 256 and len(set(first.tolist())) > 250
