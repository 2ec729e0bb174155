"""Issue #32: the masked-LM corruption holds BERT's rates, measured over many positions.

A stored hash of batches says only that the batches did not change; these tests say what the
rates are. Each share is a binomial proportion, so its standard deviation is
sqrt(p (1 - p) / n); every bound below is 5 such deviations (a chance of about 6e-7 that a
correct implementation falls outside, per check), and with n >= 200,000 chosen positions each
bound is tighter than the +-0.01 the issue asks for (asserted too). The draws are seeded, so a
test that passes once passes always; the margins say the seed was not picked to pass.

Observable shares: a chosen position becomes the mask token, or a different regular token, or
stays as it was. A random replacement that happens to draw the original token is
indistinguishable from keeping it, so with V regular tokens (drawn uniformly) the expected
shares are mask_frac, random_frac (1 - 1/V) and 1 - mask_frac - random_frac + random_frac / V.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from sinklab.data.config import DataConfig
from sinklab.data.run_data import RunData
from sinklab.data.windows import MaskSpec, mask_tokens

SIGMAS = 5.0


def _tolerance(p: float, n: int) -> float:
    return SIGMAS * math.sqrt(p * (1 - p) / n)


def _assert_share(observed: float, expected: float, n: int, what: str) -> None:
    tol = _tolerance(expected, n)
    assert tol <= 0.01, f"{what}: too few draws for the issue's +-0.01 ({n})"
    assert abs(observed - expected) <= tol, f"{what}: {observed:.4f} vs {expected:.4f} +- {tol:.4f}"


def _check_split(
    clean: np.ndarray,
    corrupted: np.ndarray,
    chosen: np.ndarray,
    maskable: np.ndarray,
    *,
    probability: float,
    mask_frac: float,
    random_frac: float,
    mask_id: int,
    n_regular: int,
) -> int:
    """Assert the four rates; returns the number of chosen positions."""
    n_maskable, n_chosen = int(maskable.sum()), int(chosen.sum())
    _assert_share(n_chosen / n_maskable, probability, n_maskable, "chosen share of maskable")
    picked, original = corrupted[chosen], clean[chosen]
    became_mask = picked == mask_id
    replaced = ~became_mask & (picked != original)
    _assert_share(became_mask.mean(), mask_frac, n_chosen, "[MASK] share")
    _assert_share(
        replaced.mean(), random_frac * (1 - 1 / n_regular), n_chosen, "random-token share"
    )
    unchanged = 1 - mask_frac - random_frac + random_frac / n_regular
    _assert_share((picked == original).mean(), unchanged, n_chosen, "unchanged share")
    # A random replacement is a regular token drawn uniformly: given its original o, a changed
    # one is uniform over the other n_regular - 1 tokens. Chi-square against those counts.
    counts = np.bincount(picked[replaced], minlength=n_regular)
    assert len(counts) == n_regular, "a random replacement was a special token"
    originals = np.bincount(original[replaced], minlength=n_regular)
    expected = (replaced.sum() - originals) / (n_regular - 1)
    assert stats.chisquare(counts, expected).pvalue > 1e-6, (counts, expected)
    return n_chosen


@pytest.mark.parametrize(
    ("probability", "mask_frac", "random_frac"),
    [(0.15, 0.8, 0.1), (0.3, 0.6, 0.25)],
    ids=["bert", "other-rates"],
)
def test_mask_tokens_holds_the_configured_rates(
    probability: float, mask_frac: float, random_frac: float
) -> None:
    n_regular, bos, end, pad, mask = 50, 50, 51, 52, 53
    gen = np.random.default_rng(7)
    ids = gen.integers(0, n_regular, size=(1500, 1000))
    ids[:, 0], ids[:, -1] = bos, end
    ids[gen.random(ids.shape) < 0.05] = pad  # specials inside windows too
    spec = MaskSpec(mask, n_regular + 4, (bos, end, pad), probability, mask_frac, random_frac)
    corrupted, targets, chosen = mask_tokens(ids, spec, np.random.default_rng(11))
    specials = np.isin(ids, [bos, end, pad])
    assert np.array_equal(targets, ids)
    assert not chosen[specials].any(), "a special token (BOS, end, pad) was selected"
    assert np.array_equal(corrupted[~chosen], ids[~chosen])
    n_chosen = _check_split(
        ids,
        corrupted,
        chosen,
        ~specials,
        probability=probability,
        mask_frac=mask_frac,
        random_frac=random_frac,
        mask_id=mask,
        n_regular=n_regular,
    )
    assert n_chosen >= 200_000


def test_mlm_batches_hold_the_configured_rates_and_never_select_bos_or_end() -> None:
    """The same rates through the data config (non-default ones, so a hard-coded 0.15/0.8/0.1
    fails) in real training batches, with BOS first and the end token last in every window."""
    cfg = DataConfig.from_dict(
        {
            "source": "synthetic",
            "synthetic": {"kind": "zipf", "vocab_size": 20},
            "seq_len": 512,
            "batch_size": 64,
            "bos": "every_window",
            "objective": "mlm",
            "end_token": True,
            "mlm_probability": 0.25,
            "mlm_mask_frac": 0.7,
            "mlm_random_frac": 0.2,
        }
    )
    data = RunData(cfg)
    data.build()
    batches = [data.batch_at(i) for i in range(26)]
    inputs = np.concatenate([b["input_ids"].numpy() for b in batches])
    clean = np.concatenate([b["targets"].numpy() for b in batches])
    chosen = np.concatenate([b["loss_mask"].numpy() for b in batches])
    end_id = data.batches.end_id
    assert (
        end_id is not None and (clean[:, 0] == data.bos_id).all() and (clean[:, -1] == end_id).all()
    )
    specials = np.isin(clean, [data.bos_id, end_id])
    assert specials.sum() == 2 * len(clean)  # zipf draws only regular tokens
    assert not chosen[specials].any(), "BOS or the end token was selected"
    assert (inputs[:, 0] == data.bos_id).all() and (inputs[:, -1] == end_id).all()
    n_chosen = _check_split(
        clean,
        inputs,
        chosen,
        ~specials,
        probability=0.25,
        mask_frac=0.7,
        random_frac=0.2,
        mask_id=data.batches.mask.mask_id,
        n_regular=20,
    )
    assert n_chosen >= 200_000
