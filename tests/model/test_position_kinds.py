"""The position encodings as objects: each kind states how it enters the model, its longest
position and what a streaming cache shift does to it, once, here; and the model does what
those facts say (nothing else in the code branches on `model.pos`)."""

from __future__ import annotations

import pytest
import torch

from sinklab.model import build_model
from sinklab.model.config import POSITIONS
from sinklab.model.position import (
    POSITION_CLASSES,
    Learned,
    PositionEncoding,
    Rope,
    alibi_slopes,
    position_class,
    sinusoidal_table,
)
from sinklab.model.streaming import StreamPlan

from .helpers import tiny

# kind: (how it enters, what a cache shift does, last token position at max_seq_len 16)
FACTS = {
    "rope": ("rotation", "keys_move", None),
    "alibi": ("bias", "keys_move", None),
    "learned": ("embedding", "fixed_at_entry", 15),
    "sinusoidal": ("embedding", "fixed_at_entry", None),
    "none": ("nothing", "no_positions", None),
}


def test_every_kind_of_model_pos_has_one_class() -> None:
    assert tuple(POSITION_CLASSES) == POSITIONS == tuple(FACTS)
    assert position_class("rope") is Rope and position_class("none") is PositionEncoding


@pytest.mark.parametrize("pos", POSITIONS)
def test_each_kind_states_how_it_enters_its_limit_and_its_shift(pos: str) -> None:
    enters, on_shift, last = FACTS[pos]
    position = tiny(pos=pos, max_seq_len=16).position
    assert (position.enters, position.on_shift, position.max_position) == (enters, on_shift, last)
    assert position.fits(16) and position.fits(17) is (last is None)
    assert position_class(pos).max_tokens(16) == (None if last is None else last + 1)


@pytest.mark.parametrize("pos", POSITIONS)
def test_only_the_embedding_kinds_change_the_embedding(pos: str) -> None:
    """`embed` (the one embedding step) is token embeddings plus, for the absolute kinds only,
    their vector at each position, the sink-token prefix counted (learned: its table rows,
    sinusoidal: the fixed table)."""
    model = build_model(tiny(pos=pos, n_sink_tokens=2)).eval()
    ids = torch.randint(0, 32, (1, 5))
    embed = model.forward_probe(ids, names=["embed"])["embed"]
    added = embed - model.tok_emb(ids)
    if pos == "learned":
        expected = model.pos_emb.weight[2:7]
    elif pos == "sinusoidal":
        expected = sinusoidal_table(7, model.cfg.d_model)[2:]
    else:
        expected = torch.zeros_like(added[0])
    assert (model.position.enters == "embedding") is bool(expected.any())
    torch.testing.assert_close(added[0], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("pos", POSITIONS)
def test_only_rope_rotates_and_only_alibi_biases_the_scores(pos: str) -> None:
    position = tiny(pos=pos, n_heads=4, n_kv_heads=4).position
    shared = position.positions(6, torch.device("cpu"))
    x = torch.randn(1, 6, 4, 4)
    rotated = not torch.equal(shared.rotate(x), x)
    assert rotated is (position.enters == "rotation")
    plain_causal = torch.zeros(6, 6).masked_fill(torch.ones(6, 6).triu(1).bool(), float("-inf"))
    biased = not torch.equal(shared.seq_bias(), plain_causal[None])
    assert biased is (position.enters == "bias")
    if biased:  # query 5, key 0: -slope * 5 per head
        torch.testing.assert_close(shared.seq_bias()[:, 5, 0], -5 * alibi_slopes(4))


@pytest.mark.parametrize("pos", POSITIONS)
def test_the_model_refuses_exactly_the_positions_its_kind_cannot_encode(pos: str) -> None:
    """`forward` (training and probes) refuses a window past max_seq_len for the absolute
    kinds; the stream path refuses only positions past a table (`max_position`), and a
    shifted cache never needs them (tokens enter at their slot, at most S + C - 1)."""
    model = build_model(tiny(pos=pos, max_seq_len=8, n_sink_tokens=1)).eval()
    long = torch.randint(0, 32, (1, 12))
    with torch.no_grad():
        if model.position.enters == "embedding":
            with pytest.raises(ValueError, match="sequence length 9 exceeds model.max_seq_len=8"):
                model(long[:, :9])
        else:
            model(long[:, :9])
        model(long[:, :8])
        if model.position.fits(12):
            model.forward_stream(long)
        else:
            with pytest.raises(ValueError, match="position 12 is past the learned table"):
                model.forward_stream(long)
        model.forward_stream(long, StreamPlan(12, 4, 1, shift=True, n_prefix=1))


def test_learned_table_keeps_its_state_dict_name_and_shape() -> None:
    """Checkpoints and converted models load as before: `pos_emb.weight`, max_seq_len + S rows."""
    for pos in POSITIONS:
        state = build_model(tiny(pos=pos, n_sink_tokens=2)).state_dict()
        if pos == "learned":
            assert state["pos_emb.weight"].shape == (16 + 2, 16)
        else:
            assert not any(k.startswith("pos_emb") for k in state)
    assert isinstance(build_model(tiny(pos="learned")).position, Learned)


def test_stream_plan_knows_its_last_position_on_the_host() -> None:
    for shift in (False, True):
        for T, C in ((5, 3), (3, 5), (9, 9)):
            plan = StreamPlan(T, C, 1, shift, n_prefix=2)
            assert plan.positions_end == int(plan.position_ids().max()) + 1
