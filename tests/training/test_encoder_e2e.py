"""Issue #17 item 1: `model.causal=false data.objective=mlm` trains and probes an encoder end to
end, its attention is bidirectional, and its loss counts the masked positions only."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from sinklab.data.run_data import RunData
from sinklab.model.config import ModelConfig
from sinklab.model.transformer import Transformer
from sinklab.runs.layout import RunLayout
from sinklab.training.module import masked_lm_loss
from sinklab.training.run import train, validate_config
from tests.training.conftest import compose_train, tiny_overrides

ENCODER = ["model.causal=false", "data.objective=mlm"]


def test_encoder_trains_and_probes_end_to_end(tmp_path: Path) -> None:
    cfg = compose_train(tiny_overrides(tmp_path / "work", steps=4) + ENCODER)
    assert cfg.callbacks.probe.stream.enabled is False  # follows model.causal
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    train(validate_config(cfg), run_dir)
    rows = pd.read_parquet(RunLayout(run_dir).probes_table)
    assert set(rows["step"]) >= {0, 4}
    alpha0 = rows[
        (rows["metric"] == "sink/alpha/key_0") & (rows["layer"] == 0) & (rows["head"] == -1)
    ]
    assert len(alpha0) == len(set(rows["step"])) and alpha0["value"].between(0, 1).all()
    # at initialisation attention is near uniform: alpha_0 near 1/T (an encoder's divisor is
    # T for every key; a causal map would give H_T / T = 0.21 at T = 16)
    first = float(alpha0[alpha0.step == 0]["value"].iloc[0])
    assert abs(first - 1 / 16) < 0.01
    assert not rows["metric"].str.startswith(("stream/", "dormancy/base_loss")).any()


@pytest.mark.parametrize("pos", ["rope", "alibi", "learned", "sinusoidal", "none"])
def test_encoder_attention_is_bidirectional(pos: str) -> None:
    """Changing the last token changes position 0's output in an encoder, never in a decoder."""
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, -1] = (changed[:, -1] + 1) % 50
    moved = {}
    for causal in (True, False):
        torch.manual_seed(0)
        cfg = ModelConfig(
            vocab_size=50,
            d_model=32,
            n_layers=2,
            n_heads=4,
            max_seq_len=16,
            pos=pos,
            causal=causal,
            init_std=0.2,
        )
        model = Transformer(cfg).eval()
        with torch.no_grad():
            for probe in (False, True):  # the fused (training) path and the explicit probe path
                out = [model.forward_probe(x).logits if probe else model(x) for x in (ids, changed)]
                moved[causal, probe] = float((out[0][:, 0] - out[1][:, 0]).abs().max())
    assert moved[True, False] == 0.0 and moved[True, True] == 0.0
    assert moved[False, False] > 1e-4 and moved[False, True] > 1e-4


def test_encoder_probe_pattern_has_weight_above_the_diagonal() -> None:
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=50, d_model=32, n_layers=1, n_heads=4, causal=False))
    out = model.forward_probe(torch.randint(0, 50, (1, 8)))
    pattern = out["blocks.0.attn.pattern"][0]
    assert out.causal is False
    assert (
        float(torch.triu(pattern, diagonal=1).sum().detach()) > 1.0
    )  # decoders have exactly 0 there
    torch.testing.assert_close(pattern.sum(-1), torch.ones(4, 8))


def test_mlm_loss_counts_masked_positions_only(tmp_path: Path) -> None:
    cfg = compose_train(tiny_overrides(tmp_path, steps=1) + ENCODER)
    data = RunData(validate_config(cfg).data)
    batch = data.batch_at(0)
    clean = RunData(validate_config(compose_train(tiny_overrides(tmp_path, steps=1))).data)
    # the original tokens are the clm inputs of the same window (no shift)
    original = clean.batch_at(0)["input_ids"]
    assert torch.equal(batch["targets"], original)
    changed = batch["input_ids"] != original
    mask = batch["loss_mask"]
    assert mask.any() and bool((changed <= mask).all())  # only masked positions are corrupted
    assert not bool(mask[:, 0].any())  # BOS is never masked
    logits = torch.randn(*batch["input_ids"].shape, data.vocab_size)
    loss = masked_lm_loss(logits, batch["targets"], mask)
    expected = torch.nn.functional.cross_entropy(logits[mask], batch["targets"][mask])
    torch.testing.assert_close(loss, expected)
    other = batch["targets"].clone()
    other[~mask] = (other[~mask] + 1) % data.vocab_size  # change every unmasked target
    assert float(masked_lm_loss(logits, other, mask)) == float(loss)
