"""The editing recorder: hook points read and edited on the probe path, with answers
computed by hand (a head zeroed through its wo columns, the LM head applied to a replaced
residual stream, a hand-set attention pattern), and the training path left alone."""

from __future__ import annotations

import pytest
import torch

from sinklab.model import build_model
from sinklab.model.edits import replace_with, scale, zero_at
from sinklab.model.recorder import NULL_RECORDER, WithPrefix

from .helpers import tiny

N, T = 2, 8


def _ids(cfg, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, cfg.vocab_size, (N, T), generator=torch.Generator().manual_seed(seed))


def _model(**overrides):
    torch.manual_seed(0)
    return build_model(tiny(**overrides)).eval()


def _head_mask(n_heads: int, head: int) -> torch.Tensor:
    mask = torch.zeros(1, n_heads, 1, 1, dtype=torch.bool)
    mask[:, head] = True
    return mask


@pytest.mark.parametrize("attention", ["softmax", "gated", "sigmoid"])
def test_zeroing_a_head_through_the_recorder_equals_zeroing_its_wo_columns(attention: str) -> None:
    model = _model(attention=attention)
    hd = model.cfg.head_dim
    ids = _ids(model.cfg)
    with torch.no_grad():
        edited = model.forward_probe(
            ids, names=(), edits={"blocks.1.attn.z": zero_at(_head_mask(4, 2))}
        )
        model.blocks[1].attn.wo.weight[:, 2 * hd : 3 * hd] = 0.0
        by_weights = model(ids)
    torch.testing.assert_close(edited.logits, by_weights, rtol=0, atol=1e-5)


def test_the_sink_token_prefix_is_edited_only_when_asked() -> None:
    """With two sink tokens, an edit sees the T token positions only; wrapped in WithPrefix it
    sees all S + T, and only then does it equal zeroing the head's wo columns."""
    model = _model(n_sink_tokens=2)
    hd = model.cfg.head_dim
    ids = _ids(model.cfg)
    seen: list[tuple[int, ...]] = []

    def spy(t: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(t.shape))
        return t

    zero = zero_at(_head_mask(4, 1))
    with torch.no_grad():
        model.forward_probe(ids, names=(), edits={"blocks.0.attn.z": spy, "embed": spy})
        tokens_only = model.forward_probe(ids, names=["attn.z"], edits={"blocks.0.attn.z": zero})
        whole = model.forward_probe(ids, names=(), edits={"blocks.0.attn.z": WithPrefix(zero)})
        model.blocks[0].attn.wo.weight[:, hd : 2 * hd] = 0.0
        by_weights = model(ids)
    assert sorted(seen) == sorted([(N, 4, T, hd), (N, T, 16)])
    assert (tokens_only["blocks.0.attn.z"][:, 1] == 0).all()  # the cache holds the edited z
    torch.testing.assert_close(whole.logits, by_weights, rtol=0, atol=1e-5)
    # the prefix still carried head 1 through layer 1's attention: the answers differ
    assert (tokens_only.logits - by_weights).abs().max() > 1e-4


def test_scaling_by_one_at_every_hook_point_is_the_identity_bit_for_bit() -> None:
    model = _model(n_sink_tokens=1, kv_bias=True)
    ids = _ids(model.cfg)
    names = ["embed", "norm_final.input"] + [
        f"blocks.{layer}.{name}"
        for layer in range(2)
        for name in (
            "norm_attn.input",
            "norm_mlp.input",
            "attn.q",
            "attn.k",
            "attn.v",
            "attn.pattern",
            "attn.z",
            "mlp.hidden",
            "resid_post",
        )
    ]
    with torch.no_grad():
        base = model.forward_probe(ids)
        same = model.forward_probe(ids, edits={name: scale(1.0) for name in names})
    assert set(names) <= set(base.cache)
    assert torch.equal(same.logits, base.logits)
    assert all(torch.equal(same[name], base[name]) for name in names)


def test_scaling_the_last_residual_stream_changes_logits_as_computed_by_hand() -> None:
    """The last block's output feeds norm_final and the LM head alone: replacing it with R
    gives lm_head(norm_final(R)); scaling it by 3 leaves RMSNorm's output (almost) as it was."""
    model = _model()
    ids = _ids(model.cfg)
    R = torch.randn(N, T, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        replaced = model.forward_probe(
            ids, names=(), edits={"blocks.1.resid_post": replace_with(R)}
        )
        by_hand = model.lm_head(model.norm_final(R))
        base = model(ids)
        scaled = model.forward_probe(ids, names=(), edits={"blocks.1.resid_post": scale(3.0)})
    torch.testing.assert_close(replaced.logits, by_hand, rtol=0, atol=1e-5)
    torch.testing.assert_close(scaled.logits, base, rtol=1e-4, atol=1e-4)  # eps aside, RMSNorm
    assert (replaced.logits - base).abs().max() > 1e-2


def test_an_edited_pattern_forces_the_explicit_path_and_mixes_the_values() -> None:
    """Replace layer 0's pattern by the uniform causal map: z is then the running mean of v,
    and the cache holds the edited pattern even though the fused path would have run."""
    model = _model(n_kv_heads=4)
    ids = _ids(model.cfg)
    uniform = torch.ones(T, T).tril()
    uniform = uniform / uniform.sum(-1, keepdim=True)
    edit = replace_with(uniform)
    with torch.no_grad():
        out = model.forward_probe(
            ids,
            names=["blocks.0.attn.v", "blocks.0.attn.z", "blocks.0.attn.pattern"],
            edits={"blocks.0.attn.pattern": edit},
        )
    v = out["blocks.0.attn.v"]
    running_mean = v.cumsum(2) / torch.arange(1, T + 1)[:, None]
    torch.testing.assert_close(out["blocks.0.attn.z"], running_mean, rtol=1e-5, atol=1e-6)
    assert torch.equal(out["blocks.0.attn.pattern"], uniform.expand(N, 4, T, T))


def test_the_training_path_is_untouched() -> None:
    """NULL_RECORDER hands back the very tensor; `forward` equals a probe run that keeps and
    edits nothing, bit for bit (both take the fused path in every layer)."""
    x = torch.randn(3)
    assert NULL_RECORDER.hook("blocks.0.resid_post", x, pos_dim=0) is x
    assert not NULL_RECORDER.touches("blocks.0.attn.pattern")
    model = _model(n_sink_tokens=1)
    ids = _ids(model.cfg)
    with torch.no_grad():
        assert torch.equal(model(ids), model.forward_probe(ids, names=()).logits)


def test_bad_edits_are_refused_with_their_name() -> None:
    model = _model()
    ids = _ids(model.cfg)
    with pytest.raises(ValueError, match=r"no hook point.*blocks\.7\.attn\.z"):
        model.forward_probe(ids, edits={"blocks.7.attn.z": scale(0.0)})
    with pytest.raises(ValueError, match=r"edit of blocks\.0\.resid_post returned \(2, 7, 16\)"):
        model.forward_probe(ids, edits={"blocks.0.resid_post": lambda t: t[:, 1:]})


def test_edits_keep_a_bfloat16_model_in_bfloat16() -> None:
    """A float32 scale and a CPU mask are cast to the heads' dtype, so the output projection
    (bf16 weights) still gets bf16 input."""
    model = _model().to(torch.bfloat16)
    ids = _ids(model.cfg)
    factor = torch.ones(1, 4, 1, 1)
    factor[:, 3] = 0.0
    with torch.no_grad():
        scaled = model.forward_probe(ids, names=(), edits={"blocks.0.attn.z": scale(factor)})
        zeroed = model.forward_probe(
            ids, names=(), edits={"blocks.0.attn.z": zero_at(_head_mask(4, 3))}
        )
    assert scaled.logits.dtype == torch.bfloat16
    assert torch.equal(scaled.logits, zeroed.logits)


def test_edits_follow_the_device_the_model_runs_on() -> None:
    """The meta device stands in for an accelerator: a mask made on the CPU is moved to it."""
    meta = torch.device("meta")
    model = _model(attention="softmax_off_by_one").to(meta)
    ids = torch.zeros(N, T, dtype=torch.long, device=meta)
    edits = {"blocks.0.attn.z": zero_at(_head_mask(4, 0)), "blocks.1.attn.pattern": scale(0.5)}
    out = model.forward_probe(ids, names=(), edits=edits)
    assert out.logits.device == meta and out.logits.shape == (N, T, 32)
