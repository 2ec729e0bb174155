"""Prefixed sinks on a frozen model: give the massive activation a token of its own.

CushionCache (Son et al. 2024) and PrefixQuant (Chen et al. 2024) put a few tokens before
every input, encoded once and kept in full precision, so that the sink and its massive
activations live in the prefix and the tokens that follow (the ones quantised) are tame.
Three prefixes:
    bos           the BOS token alone
    prefixquant   BOS plus the token ids most often found as outlier tokens (m_t > eta x
                  median, `outliers.outlier_mask`) at the linear inputs on the calibration data
    cushioncache  a greedy search: starting from BOS (or nothing, without one), add the
                  candidate token that most lowers the largest linear-input |x| of the tokens
                  that follow; stop when the relative gain falls below `min_gain`
"Encoded once" is implemented as prepending the prefix to every window and leaving its
positions out of the loss, of calibration and of quantisation (their linear outputs are
recomputed with full-precision weights: `quant.fake_quant`). For a causal model that is
exactly a full-precision K/V cache of the prefix. Every prefix is also evaluated without
quantisation (`ppl/fp`), the control PrefixQuant never reported: a perplexity change the
prefix alone causes must not be credited to quantisation.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import islice
from typing import Any, Literal, get_args

import pandas as pd
import torch
from torch import nn

from sinklab.analysis import outliers, quant
from sinklab.analysis.capture import eval_mode, model_device
from sinklab.configs import from_mapping
from sinklab.errors import ConfigError, check, check_choice

PrefixName = Literal["bos", "prefixquant", "cushioncache"]
PREFIXES: tuple[str, ...] = get_args(PrefixName)


@dataclass(frozen=True)
class PrefixConfig:
    """`prefixes` which to evaluate; `bos_id` the tokenizer's BOS (None: no BOS, the searches
    start empty and `bos` cannot be asked for); `max_len` the longest prefix, BOS included;
    `eta` the outlier-token threshold; `n_outlier_tokens` how many PrefixQuant tokens (None:
    the mean outlier count per window, rounded up); `candidates` the CushionCache candidate
    ids (empty: the `n_candidates` most frequent tokens of the calibration data);
    `min_gain` the relative drop in max activation a greedy step must bring;
    `search_batches` how many calibration batches score the searches (at most
    `quant.calibration_batches`)."""

    prefixes: tuple[PrefixName, ...] = PREFIXES  # type: ignore[assignment]
    bos_id: int | None = None
    max_len: int = 4
    eta: float = 64.0
    n_outlier_tokens: int | None = None
    candidates: tuple[int, ...] = ()
    n_candidates: int = 32
    min_gain: float = 0.05
    search_batches: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefixes", tuple(self.prefixes))
        object.__setattr__(self, "candidates", tuple(int(c) for c in self.candidates))
        for name in self.prefixes:
            check_choice("prefix.prefixes", name, PREFIXES)
        check(self.max_len >= 1, "prefix.max_len", f"must be >= 1, got {self.max_len}")
        outliers.check_eta(self.eta, "prefix.eta")
        check(
            self.n_outlier_tokens is None or self.n_outlier_tokens >= 1,
            "prefix.n_outlier_tokens",
            f"must be >= 1 or null, got {self.n_outlier_tokens}",
        )
        check(self.n_candidates >= 1, "prefix.n_candidates", "must be >= 1")
        check(
            0.0 <= self.min_gain < 1.0, "prefix.min_gain", f"must be in [0, 1), got {self.min_gain}"
        )
        check(self.search_batches >= 1, "prefix.search_batches", "must be >= 1")

    def check_bos(self) -> None:
        """The `bos` prefix needs `bos_id`, which the caller fills from the tokenizer, so this
        is checked when evaluation starts (before any work), not when the config is built."""
        check(
            "bos" not in self.prefixes or self.bos_id is not None,
            "prefix.bos_id",
            "the 'bos' prefix needs the tokenizer's BOS id (or drop 'bos' from prefix.prefixes)",
        )

    def check_budget(self, calibration_batches: int) -> None:
        """The searches draw their `search_batches` from the calibration batches: a budget
        larger than those would quietly search on fewer, so it is refused before any work
        (the `bos` prefix searches nothing)."""
        searching = {"prefixquant", "cushioncache"} & set(self.prefixes)
        check(
            not searching or self.search_batches <= calibration_batches,
            "prefix.search_batches",
            f"must be <= the {calibration_batches} calibration batches the searches draw from, "
            f"got {self.search_batches}",
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["prefixes"], out["candidates"] = list(self.prefixes), list(self.candidates)
        return out

    @classmethod
    def from_dict(cls, values: Any) -> PrefixConfig:
        """Build from a plain mapping; errors are one-line ConfigErrors naming `prefix.<key>`."""
        return from_mapping(cls, values, "prefix")


def check_fits(model: nn.Module, prefix_len: int, window: int) -> None:
    """A prefix plus a window (plus the model's own sink tokens) must fit the model's context
    (`model.max_seq_len`)."""
    limit = getattr(getattr(model, "cfg", None), "max_seq_len", None)
    sinks = quant.model_skip(model)
    if limit is not None and sinks + prefix_len + window > int(limit):
        extra = f" and {sinks} sink tokens" if sinks else ""
        raise ConfigError(
            "prefix.max_len",
            f"a {prefix_len}-token prefix plus {window}-token windows{extra} exceeds "
            f"model.max_seq_len={limit}",
        )


# -- the searches -----------------------------------------------------------------------------


def frequent_tokens(batches: Sequence[torch.Tensor], n: int) -> list[int]:
    """The n most frequent token ids of the batches, ties broken by the smaller id."""
    counts = Counter(torch.cat([b.reshape(-1).cpu() for b in batches]).tolist())
    return [tok for tok, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]]


def max_activation(
    model: nn.Module, batches: Sequence[torch.Tensor], prefix: Sequence[int] = ()
) -> float:
    """Largest |x| over every quantised linear's input at the tokens after the prefix (FP)."""
    stats = quant.InputStats()
    device = model_device(model)
    skip = quant.model_skip(model) + len(prefix)
    with eval_mode(model), quant.watch_inputs(model, stats, skip):
        with quant.stop_before_head(model) as run:
            for ids in batches:
                run(quant.with_prefix(ids.to(device), prefix))
    return stats.summary()["max_act"]


def outlier_token_counts(
    model: nn.Module, batches: Sequence[torch.Tensor], eta: float
) -> tuple[Counter[int], float]:
    """Token ids found as outlier tokens at any quantised linear input (a token counts once per
    window position), and the mean number of outlier positions per window."""
    device = model_device(model)
    masks: list[torch.Tensor] = []
    last: list[torch.Tensor] = []  # q/k/v read one tensor: its mask counts once

    def see(_name: str, x: torch.Tensor) -> None:
        if last and last[0] is x:
            return
        last[:] = [x]
        masks.append(outliers.outlier_mask(outliers.token_max(x), eta).cpu())

    ids_seen: Counter[int] = Counter()
    per_window: list[float] = []
    with eval_mode(model), quant.watch_inputs(model, see, quant.model_skip(model)):
        with quant.stop_before_head(model) as run:
            for ids in batches:
                masks.clear()
                run(ids.to(device))
                last.clear()
                if not masks:
                    continue
                hit = torch.stack(masks).any(0)  # [N, T]: an outlier at any site
                ids_seen.update(ids.cpu()[hit].tolist())
                per_window.extend(hit.sum(1).float().tolist())
    return ids_seen, (sum(per_window) / len(per_window) if per_window else 0.0)


def prefixquant_prefix(
    model: nn.Module, batches: Sequence[torch.Tensor], cfg: PrefixConfig
) -> list[int]:
    """BOS plus the ids most often carried by outlier tokens (PrefixQuant's prefix)."""
    counts, mean_count = outlier_token_counts(model, batches, cfg.eta)
    start = [cfg.bos_id] if cfg.bos_id is not None else []
    n = cfg.n_outlier_tokens or max(1, math.ceil(mean_count))
    ranked = [t for t, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]
    extra = [t for t in ranked if t not in start][: max(0, min(n, cfg.max_len - len(start)))]
    return start + extra


def cushioncache_prefix(
    model: nn.Module, batches: Sequence[torch.Tensor], cfg: PrefixConfig
) -> list[int]:
    """CushionCache's greedy search on the max linear-input activation of the following tokens."""
    candidates = list(cfg.candidates) or frequent_tokens(batches, cfg.n_candidates)
    prefix = [cfg.bos_id] if cfg.bos_id is not None else []
    best = max_activation(model, batches, prefix)
    while len(prefix) < cfg.max_len:
        scores = [(max_activation(model, batches, [*prefix, c]), c) for c in candidates]
        score, token = min(scores)
        if best <= 0 or (best - score) / best < cfg.min_gain:
            break
        prefix.append(token)
        best = score
    return prefix


# -- evaluation -------------------------------------------------------------------------------


def find_prefixes(
    model: nn.Module, batches: Iterable[torch.Tensor], cfg: PrefixConfig
) -> dict[str, list[int]]:
    """The token ids of each configured prefix, found on the first `cfg.search_batches` of
    `batches` (calibration data): only those are drawn, and every search step reads them all."""
    search = list(islice(batches, cfg.search_batches))
    found: dict[str, list[int]] = {}
    for name in cfg.prefixes:
        if name == "bos":
            found[name] = [int(cfg.bos_id)]  # type: ignore[arg-type]
        elif name == "prefixquant":
            found[name] = prefixquant_prefix(model, search, cfg)
        else:
            found[name] = cushioncache_prefix(model, search, cfg)
    return found


def prefix_eval(
    model: nn.Module,
    eval_ids: torch.Tensor,
    calib_batches: Sequence[torch.Tensor],
    qcfg: quant.QuantConfig = quant.QuantConfig(),  # noqa: B008 - frozen, so sharing is safe
    pcfg: PrefixConfig = PrefixConfig(),  # noqa: B008
) -> pd.DataFrame:
    """`quant.w8a8_eval`'s rows without a prefix, then per prefix `quant/prefix/{name}/...`:
    `len`, `token_{i}`, `ppl/fp` (the FP + prefix control), `ppl_fp_change` (its change from
    the FP perplexity without prefix), `ppl/{mode}`, `ppl_increase/{mode}` (over FP + prefix),
    `max_act` and `token_max_over_median` of the tokens that follow."""
    pcfg.check_bos()
    calib = quant.take_batches(calib_batches, qcfg.calibration_batches)
    check_fits(model, pcfg.max_len, max(eval_ids.shape[1], *(b.shape[1] for b in calib)))
    pcfg.check_budget(qcfg.calibration_batches)
    found = find_prefixes(model, calib, pcfg)
    weights = quant.quantized_weights(model, qcfg)  # once, for every mode and prefix
    base = {
        "bits": float(qcfg.bits),
        **quant.quant_values(model, eval_ids, calib, qcfg, (), 64.0, weights),
    }
    frames = [quant.frame(base, "quant/")]
    for name, tokens in found.items():
        values = quant.quant_values(model, eval_ids, calib, qcfg, tokens, pcfg.eta, weights)
        values["ppl_fp_change"] = values["ppl/fp"] - base["ppl/fp"]
        values["len"] = float(len(tokens))
        values.update({f"token_{i}": float(t) for i, t in enumerate(tokens)})
        frames.append(quant.frame(values, f"quant/prefix/{name}/"))
    return pd.concat(frames, ignore_index=True)
