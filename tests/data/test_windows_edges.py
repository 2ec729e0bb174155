"""Window and masking edge cases: the int64 contract for token caches stored as uint16, the
error for every_window without BOS, and BERT masking's intervals at their exact boundaries.

The boundary tests drive `mask_tokens` with a scripted generator: its draws are given, so
which position is masked, replaced or kept is worked out by hand from the documented rule
(chosen iff draw < probability; of those, u < mask_frac -> mask, mask_frac <= u <
mask_frac + random_frac -> random token, else kept).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sinklab.data.windows import MaskSpec, WindowSpec, cut, mask_tokens, to_batch


def _spec(**kw) -> WindowSpec:
    base = dict(seq_len=4, bos="none", bos_id=9, min_context=0, context_end=4)
    base.update(kw)
    return WindowSpec(**base)


@pytest.mark.parametrize("bos", ["none", "every_window"])
def test_cut_gives_int64_from_a_uint16_token_cache(bos: str) -> None:
    stream = np.arange(20, dtype=np.uint16)  # the token cache's dtype for small vocabularies
    inputs, targets = cut(stream, np.array([0, 5]), _spec(bos=bos))
    assert inputs.dtype == np.int64 and targets.dtype == np.int64
    first = [9, 5, 6, 7] if bos == "every_window" else [5, 6, 7, 8]
    assert inputs[1].tolist() == first
    assert targets[1].tolist() == ([5, 6, 7, 8] if bos == "every_window" else [6, 7, 8, 9])


def test_every_window_without_bos_says_what_is_missing() -> None:
    with pytest.raises(ValueError, match="^bos=every_window needs a tokenizer with a BOS token$"):
        cut(np.arange(20), np.array([0]), _spec(bos="every_window", bos_id=None))


def test_to_batch_makes_int64_ids_and_a_bool_mask_from_any_integer_arrays() -> None:
    ids = np.array([[1, 2], [3, 4]], dtype=np.uint16)
    mask = np.array([[1, 0], [0, 1]], dtype=np.uint8)
    batch = to_batch(ids, ids + 1, mask)
    assert batch["input_ids"].dtype == torch.int64
    assert batch["targets"].dtype == torch.int64
    assert batch["loss_mask"].dtype == torch.bool
    assert batch["targets"].tolist() == [[2, 3], [4, 5]]
    assert batch["loss_mask"].tolist() == [[True, False], [False, True]]


class _Scripted:
    """A generator whose draws are given: random() returns the next array, integers() the
    given indices, choice() the given position."""

    def __init__(self, draws: list[np.ndarray], indices: np.ndarray, pick: int) -> None:
        self.draws, self.indices, self.pick = list(draws), indices, pick

    def random(self, shape):
        out = self.draws.pop(0)
        assert out.shape == tuple(shape)
        return out

    def integers(self, low, high=None, size=None):
        return self.indices

    def choice(self, a):
        return self.pick


# mask_id 7, vocab 8, specials {6, 7}: random replacements come from allowed = [0 .. 5]
SPEC = MaskSpec(
    mask_id=7, vocab_size=8, special_ids=(6,), probability=0.5, mask_frac=0.5, random_frac=0.25
)


def test_choice_and_corruption_intervals_are_half_open() -> None:
    ids = np.array([[1, 1, 1, 1, 1, 6]])
    # draw == probability is not chosen; the special token is never chosen
    chosen_draw = np.array([[0.0, 0.25, 0.25, 0.25, 0.5, 0.0]])
    # u: 0.5 (== mask_frac) -> random; 0.75 (== mask_frac + random_frac) -> kept;
    # 0.25 -> mask; 0.0 -> mask; the fifth is not chosen
    u = np.array([[0.5, 0.75, 0.25, 0.0, 0.0, 0.0]])
    indices = np.array([[3, 4, 5, 0, 1, 2]])  # allowed[i] == i here
    gen = _Scripted([chosen_draw, u], indices, pick=4)
    corrupted, targets, loss_mask = mask_tokens(ids, SPEC, gen)  # type: ignore[arg-type]
    assert loss_mask.tolist() == [[True, True, True, True, False, False]]
    assert corrupted.tolist() == [[3, 1, 7, 7, 1, 6]]
    assert targets.tolist() == ids.tolist()


def test_the_fallback_position_is_added_only_when_nothing_was_chosen() -> None:
    ids = np.array([[1, 2, 3]])
    u = np.full((1, 3), 0.9)  # chosen positions stay as they are
    some = _Scripted([np.array([[0.1, 0.9, 0.9]]), u], np.zeros((1, 3), int), pick=2)
    assert mask_tokens(ids, SPEC, some)[2].tolist() == [[True, False, False]]  # type: ignore[arg-type]
    none = _Scripted([np.array([[0.9, 0.9, 0.9]]), u], np.zeros((1, 3), int), pick=2)
    assert mask_tokens(ids, SPEC, none)[2].tolist() == [[False, False, True]]  # type: ignore[arg-type]


def test_random_replacements_cover_every_allowed_token_per_position() -> None:
    """Every chosen token is replaced (random_frac 1): each position draws its own token,
    uniformly over the non-special ids, the lowest included."""
    spec = MaskSpec(
        mask_id=3, vocab_size=4, special_ids=(2,), probability=1.0, mask_frac=0.0, random_frac=1.0
    )
    ids = np.ones((50, 40), dtype=np.int64)
    corrupted, _, loss_mask = mask_tokens(ids, spec, np.random.default_rng(0))
    assert bool(loss_mask.all())
    assert set(np.unique(corrupted).tolist()) == {0, 1}
    share = float((corrupted == 0).mean())
    assert 0.45 < share < 0.55  # 2,000 fair draws: 0.5 +- 0.011 (1 sd)


def test_mask_tokens_targets_are_int64_from_a_uint16_cache() -> None:
    ids = np.array([[1, 2, 3, 4]], dtype=np.uint16)
    corrupted, targets, _ = mask_tokens(ids, SPEC, np.random.default_rng(0))
    assert targets.dtype == np.int64 and corrupted.dtype == np.int64
    assert targets.tolist() == [[1, 2, 3, 4]]
