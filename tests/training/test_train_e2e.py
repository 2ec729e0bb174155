"""End-to-end training on tiny configs: every position encoding and attention variant trains,
writes checkpoints, the probe table and the exported weights."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from sinklab.training.run import train, validate_config
from tests.training.conftest import compose_train, tiny_overrides

VARIANTS = [
    ["model.pos=rope"],
    ["model.pos=alibi"],
    ["model.pos=learned"],
    ["model.pos=sinusoidal"],
    ["model.pos=none"],
    ["model.attention=sigmoid"],
    ["model.attention=sigmoid_norm"],
    ["model.attention=softmax_off_by_one"],
    ["model.attention=sink_logit"],
    ["model.attention=gated", "model.gate=per_head"],
    ["model.attention=gated", "model.gate=per_channel"],
    ["model.attention=relu"],
    ["model.attention=clipped_softmax"],
    ["model.n_sink_tokens=2"],
    ["model.kv_bias=true"],
]

# What each variant leaves in the run that plain softmax does not (so a config that silently
# forced `attention=softmax`, or dropped a slot, fails): the probe table's proxy flag (1 for
# weights that are not normalised), its slot rows, and the extra exported parameters with
# their shapes (tiny model: d_model 32, 2 layers, 4 heads of 8, max_seq_len 64).
PROXY = {"sigmoid", "relu", "clipped_softmax"}
SIGNATURES: dict[str, tuple[set[str], dict[str, tuple[int, ...]]]] = {
    "attention=sink_logit": ({"sink_logit"}, {"blocks.0.attn.sink_logit": (4,)}),
    "attention=softmax_off_by_one": ({"sink_logit"}, {}),
    "attention=gated,gate=per_head": (set(), {"blocks.0.attn.gate.weight": (4, 32)}),
    "attention=gated,gate=per_channel": (set(), {"blocks.0.attn.gate.weight": (32, 32)}),
    "n_sink_tokens=2": ({"sink_token_0", "sink_token_1"}, {"sink_tokens": (2, 32)}),
    "kv_bias=true": (
        {"kv_bias"},
        {"blocks.0.attn.k_bias": (4, 8), "blocks.0.attn.v_bias": (4, 8)},
    ),
    "pos=learned": (set(), {"pos_emb.weight": (64, 32)}),
}
SIGNATURE_KEYS = ("sink_logit", "attn.gate.weight", "sink_tokens", "k_bias", "v_bias", "pos_emb")


def _variant_id(extra: list[str]) -> str:
    return ",".join(x.split(".", 1)[1] for x in extra)


def _assert_signature(variant: str, rows: pd.DataFrame, run_dir: Path) -> None:
    slots_want, params_want = SIGNATURES.get(variant, (set(), {}))
    proxy = rows.loc[rows["metric"] == "sink/proxy_scores", "value"].unique().tolist()
    assert proxy == [1.0 if variant.split("=")[1] in PROXY else 0.0], variant
    slots = {m.split("/", 1)[1] for m in rows["metric"].unique() if m.startswith("slot_mass/")}
    assert slots == slots_want, variant
    weights = load_file(str(run_dir / "model.safetensors"))
    extra = {
        k: tuple(v.shape)
        for k, v in weights.items()
        if any(key in k for key in SIGNATURE_KEYS) and not k.startswith("blocks.1.")
    }
    assert extra == params_want, variant


def _run(tmp_path: Path, extra: list[str], steps: int = 4):
    cfg = compose_train(tiny_overrides(tmp_path, steps=steps) + extra)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    return train(validate_config(cfg), run_dir), run_dir


@pytest.mark.parametrize("extra", VARIANTS, ids=_variant_id)
def test_variant_trains_and_records(tmp_path: Path, extra: list[str]) -> None:
    result, run_dir = _run(tmp_path, extra)
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").glob("step*.ckpt"))
    assert ckpts == [
        "step0000000-tokens0.ckpt",
        "step0000001-tokens128.ckpt",
        "step0000002-tokens256.ckpt",
        "step0000004-tokens512.ckpt",
    ]
    assert (run_dir / "checkpoints" / "last.ckpt").exists()
    rows = pd.read_parquet(run_dir / "metrics" / "probes.parquet")
    assert sorted(rows["step"].unique()) == [0, 1, 2, 4]
    assert {"run_id", "step", "tokens_seen", "layer", "head", "metric", "value"} <= set(
        rows.columns
    )
    assert rows["metric"].str.startswith("sink/").any()
    assert result.final_train_loss is not None and torch.isfinite(
        torch.tensor(result.final_train_loss)
    )
    assert (run_dir / "model.safetensors").exists() and (run_dir / "summary.json").exists()
    assert (run_dir / "probe" / "probe_set.npz").exists()
    _assert_signature(_variant_id(extra), rows, run_dir)


def test_checkpoint_loads_with_weights_only(tmp_path: Path) -> None:
    _, run_dir = _run(tmp_path, [])
    state = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 4
    assert not any("_orig_mod" in k for k in state["state_dict"])
    assert state["sinklab"]["tokens_seen"] == 4 * 4 * 32


def test_resume_reproduces_uninterrupted_losses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run stopped after step 4 and resumed from its last.ckpt (the full training state)
    gives the same losses and weights as running 8 steps straight."""
    from sinklab.training.module import SinkLabModule

    full_dir, part_dir = tmp_path / "full", tmp_path / "part"
    full_dir.mkdir()
    part_dir.mkdir()
    base = tiny_overrides(tmp_path, steps=8) + ["callbacks.checkpoint.full_every=4"]
    train(validate_config(compose_train(base)), full_dir)

    original = SinkLabModule.on_train_batch_end

    def stop_after_step_4(self, outputs, batch, batch_idx):  # noqa: ANN001, ANN202
        original(self, outputs, batch, batch_idx)
        if self.global_step == 4:
            self.trainer.should_stop = True

    with monkeypatch.context() as patch:
        patch.setattr(SinkLabModule, "on_train_batch_end", stop_after_step_4)
        train(validate_config(compose_train(base)), part_dir)
    last = part_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4
    train(validate_config(compose_train(base + [f"ckpt_path={last}"])), part_dir)
    full = pd.read_csv(full_dir / "csv" / "metrics.csv")
    part = pd.read_csv(part_dir / "csv" / "metrics.csv")
    full_loss = full.dropna(subset=["train/loss"]).set_index("step")["train/loss"]
    part_loss = part.dropna(subset=["train/loss"]).set_index("step")["train/loss"]
    assert part_loss.index.min() < 4 and part_loss.index.max() >= 7  # both segments logged
    for step, loss in part_loss.items():
        assert loss == full_loss[step], (
            f"step {step}: resumed {loss} != uninterrupted {full_loss[step]}"
        )
    a = torch.load(full_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(part_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
