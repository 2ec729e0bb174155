"""Fake-quantised W8A8 evaluation in plain torch: how much do the outliers cost?

Quantise-then-dequantise (no int kernels): the model runs in float, but every value a linear
layer sees has been rounded to one of 2^bits levels, so the perplexity change is the
quantisation error and nothing else. Every `nn.Linear` except the LM head is quantised:
    weights      symmetric int, per output channel (or per tensor), levels -(2^(b-1)-1) .. 2^(b-1)-1
    activations  asymmetric int (levels 0 .. 2^b - 1 with a zero point), at every linear's
                 input, in one of three modes:
        per_tensor_static   one range per linear, the min / max over the calibration batches
        per_tensor_dynamic  one range per window (a sequence: batch size 1 at inference), at run time
        per_token_dynamic   one range per token, at run time
The three modes share the asymmetric quantiser, so they differ only in where the range comes
from. Static ranges are calibrated on the full-precision model. Leading positions can be kept
out of quantisation (`n_skip`): the model's own sink tokens and a prefixed sink (`prefix.py`)
are encoded once in full precision and only their keys and values are read afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal, get_args

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from sinklab.analysis import outliers
from sinklab.analysis.capture import eval_mode, model_device
from sinklab.configs import from_mapping
from sinklab.errors import check, check_choice

Mode = Literal["per_tensor_static", "per_tensor_dynamic", "per_token_dynamic"]
MODES: tuple[str, ...] = get_args(Mode)
Granularity = Literal["per_channel", "per_tensor"]
COLUMNS = ["layer", "head", "metric", "value"]
# A bidirectional model sees the token it would predict: its next-token perplexity means nothing.
QUANT_CAUSAL_ONLY = "the W8A8 evaluation scores next-token perplexity: causal models only"


@dataclass(frozen=True)
class QuantConfig:
    """`bits` for weights and activations (8: W8A8); `weight_granularity` per output channel or
    per tensor; `modes` the activation modes evaluated; `calibration_batches` how many
    training batches set the static ranges; `batch_size` windows per forward."""

    bits: int = 8
    weight_granularity: Granularity = "per_channel"
    modes: tuple[Mode, ...] = MODES  # type: ignore[assignment]
    calibration_batches: int = 16
    batch_size: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "modes", tuple(self.modes))
        check(
            isinstance(self.bits, int) and 2 <= self.bits <= 16,
            "quant.bits",
            f"must be in 2..16, got {self.bits}",
        )
        check_choice("quant.weight_granularity", self.weight_granularity, get_args(Granularity))
        check(len(self.modes) > 0, "quant.modes", f"needs at least one of: {', '.join(MODES)}")
        for mode in self.modes:
            check_choice("quant.modes", mode, MODES)
        check(
            self.calibration_batches >= 1,
            "quant.calibration_batches",
            f"must be >= 1, got {self.calibration_batches}",
        )
        check(self.batch_size >= 1, "quant.batch_size", f"must be >= 1, got {self.batch_size}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["modes"] = list(self.modes)
        return out

    @classmethod
    def from_dict(cls, values: Any) -> QuantConfig:
        """Build from a plain mapping; errors are one-line ConfigErrors naming `quant.<key>`."""
        return from_mapping(cls, values, "quant")


# -- the quantisers ---------------------------------------------------------------------------


def quantize_symmetric(x: torch.Tensor, bits: int, dim: int | None = None) -> torch.Tensor:
    """Round x to the symmetric grid scale x {-(2^(b-1)-1) .. 2^(b-1)-1} and back, with
    scale = max|x| / (2^(b-1)-1) over the whole tensor (dim None) or per slice along `dim`
    (dim=1 on a weight [out, in]: one scale per output channel)."""
    qmax = 2 ** (bits - 1) - 1
    if dim is None:
        amax = x.abs().amax()
    else:
        amax = x.abs().amax(dim=dim, keepdim=True)
    scale = amax / qmax
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    return torch.clamp(torch.round(x / scale), -qmax, qmax) * scale


def quantize_asymmetric(
    x: torch.Tensor, lo: torch.Tensor | float, hi: torch.Tensor | float, bits: int
) -> torch.Tensor:
    """Round x to 2^b levels spanning [lo, hi] (widened to include 0, so 0 is exact) and back:
    scale = (hi - lo) / (2^b - 1), zero point z = round(-lo / scale),
    q = clamp(round(x / scale) + z, 0, 2^b - 1), result (q - z) x scale. `lo` / `hi` broadcast
    against x (a scalar range per tensor, [N, 1, 1] per window, [N, T, 1] per token)."""
    levels = 2**bits - 1
    lo = torch.clamp(torch.as_tensor(lo, dtype=x.dtype, device=x.device), max=0.0)
    hi = torch.clamp(torch.as_tensor(hi, dtype=x.dtype, device=x.device), min=0.0)
    scale = (hi - lo) / levels
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    zero = torch.round(-lo / scale)
    # clamp(round(x / s) + z, 0, L) - z == clamp(round(x / s), -z, L - z) exactly (integers
    # in float), so one temporary and in-place ops: the same values in a third of the passes
    q = (x / scale).round_()
    return q.clamp_(min=-zero, max=levels - zero).mul_(scale)


def quantize_weight(w: torch.Tensor, bits: int, granularity: str = "per_channel") -> torch.Tensor:
    """A linear layer's weight [out, in], fake-quantised symmetrically per row or per tensor."""
    return quantize_symmetric(w, bits, dim=1 if granularity == "per_channel" else None)


def quantize_activation(
    x: torch.Tensor, bits: int, mode: str, static_range: tuple[float, float] | None = None
) -> torch.Tensor:
    """x [N, T, d] fake-quantised in `mode` (see the module docstring)."""
    check_choice("quant.modes", mode, MODES)
    if mode == "per_tensor_static":
        if static_range is None:
            raise ValueError("per_tensor_static needs a calibrated range")
        return quantize_asymmetric(x, static_range[0], static_range[1], bits)
    dims = (1, 2) if mode == "per_tensor_dynamic" else (2,)
    return quantize_asymmetric(
        x, x.amin(dim=dims, keepdim=True), x.amax(dim=dims, keepdim=True), bits
    )


# -- which modules, and hooks on them --------------------------------------------------------


def quantised_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """Every `nn.Linear` of the model except the LM head (kept in full precision)."""
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] != "lm_head"
    ]


def model_skip(model: nn.Module) -> int:
    """Leading positions every forward carries before the tokens: the model's sink tokens."""
    return int(getattr(getattr(model, "cfg", None), "n_sink_tokens", 0) or 0)


class _SharedInput:
    """The last input seen and what was made of it: q/k/v (and gate/up) read one tensor, so
    its statistics or its quantised copy are computed once and reused by the siblings."""

    def __init__(self) -> None:
        self.source: torch.Tensor | None = None
        self.version = -1
        self.key: Any = None
        self.value: Any = None

    def get(self, x: torch.Tensor, key: Any, make: Callable[[], Any]) -> Any:
        if x.is_inference():  # no version counter to prove it unchanged: no reuse
            return make()
        if not (self.source is x and self.version == x._version and self.key == key):
            self.source, self.version, self.key, self.value = x, x._version, key, make()
        return self.value

    def clear(self) -> None:
        self.source = self.value = None


@contextmanager
def watch_inputs(
    model: nn.Module, fn: Callable[[str, torch.Tensor], None], n_skip: int = 0
) -> Iterator[None]:
    """Call fn(name, x[:, n_skip:]) with the input of every quantised linear, for the block only.

    Linears that read the same tensor (q/k/v) get the same view object, so `fn` can recognise
    a repeat by identity. The hooks exist only inside the block, so a model that is not being
    measured pays nothing.
    """
    shared = _SharedInput()

    def hook(_m: nn.Module, args: tuple[Any, ...], name: str) -> None:
        fn(name, shared.get(args[0], None, lambda: args[0][:, n_skip:].detach()))

    handles = [
        lin.register_forward_pre_hook(lambda m, args, name=name: hook(m, args, name))
        for name, lin in quantised_linears(model)
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        shared.clear()


class _HeadReached(Exception):
    """Raised before the LM head: every quantised linear has seen its input by then."""


@contextmanager
def stop_before_head(model: nn.Module) -> Iterator[Callable[..., None]]:
    """Yields run(*args): a forward that stops where the LM head would start (its logits are
    not needed to watch the linear inputs; on SmolLM2's 49k vocabulary they are a fifth of the
    work). A model without an `lm_head` runs whole."""
    head = getattr(model, "lm_head", None)
    handle = None
    if isinstance(head, nn.Module):

        def stop(_m: nn.Module, _args: tuple[Any, ...]) -> None:
            raise _HeadReached

        handle = head.register_forward_pre_hook(stop)

    def run(*args: Any) -> None:
        try:
            model(*args)
        except _HeadReached:
            pass

    try:
        yield run
    finally:
        if handle is not None:
            handle.remove()


def quantized_weights(model: nn.Module, cfg: QuantConfig) -> dict[str, torch.Tensor]:
    """Every quantised linear's fake-quantised weight: computed once per evaluation and shared
    by every mode and prefix (they all use the same weights)."""
    with torch.no_grad():
        return {
            name: quantize_weight(lin.weight.data, cfg.bits, cfg.weight_granularity)
            for name, lin in quantised_linears(model)
        }


@contextmanager
def fake_quant(
    model: nn.Module,
    cfg: QuantConfig,
    mode: str,
    ranges: dict[str, tuple[float, float]] | None = None,
    n_skip: int = 0,
    weights: dict[str, torch.Tensor] | None = None,
) -> Iterator[nn.Module]:
    """The model with fake-quantised weights and activations for the block; restored after.

    Weights: each linear's weight tensor is swapped for a quantised copy (`weights`, from
    `quantized_weights`, or made here) and the original tensor object put back on exit
    (bit-identical). Activations: a pre-hook quantises positions n_skip.. of every linear's
    input in `mode` (static ranges from `calibrate`). The first n_skip positions (sink tokens,
    a prefix) stay exact: a forward hook recomputes their outputs with the full-precision
    weight, as if their keys and values had been cached from the full-precision model.
    """
    check_choice("quant.modes", mode, MODES)
    if mode == "per_tensor_static":
        missing = [n for n, _ in quantised_linears(model) if ranges is None or n not in ranges]
        if missing:
            raise ValueError(f"per_tensor_static needs calibrated ranges; missing {missing[:3]}")
    if weights is None:
        weights = quantized_weights(model, cfg)
    originals: list[tuple[nn.Linear, torch.Tensor]] = []
    shared = _SharedInput()
    with ExitStack() as stack:
        stack.callback(shared.clear)
        try:
            for name, lin in quantised_linears(model):
                w = lin.weight.data
                originals.append((lin, w))
                lin.weight.data = weights[name]
                rng = ranges.get(name) if ranges else None
                pre = _act_hook(cfg.bits, mode, rng, n_skip, shared)
                stack.callback(lin.register_forward_pre_hook(pre).remove)
                if n_skip:
                    post = _exact_prefix_hook(w, n_skip)
                    stack.callback(lin.register_forward_hook(post).remove)
            yield model
        finally:
            for lin, w in originals:
                lin.weight.data = w


def _act_hook(
    bits: int, mode: str, rng: tuple[float, float] | None, n_skip: int, shared: _SharedInput
) -> Callable[..., Any]:
    def quantise(x: torch.Tensor) -> torch.Tensor:
        tail = quantize_activation(x[:, n_skip:], bits, mode, rng)
        return torch.cat([x[:, :n_skip], tail], dim=1) if n_skip else tail

    def hook(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        # siblings reading one tensor share one quantised copy; a static range is part of the
        # key (they are equal, being calibrated on the same tensor, but that is checked)
        x = shared.get(args[0], rng, lambda: quantise(args[0]))
        return (x, *args[1:])

    return hook


def _exact_prefix_hook(weight: torch.Tensor, n_skip: int) -> Callable[..., Any]:
    def hook(module: nn.Linear, args: tuple[Any, ...], out: torch.Tensor) -> torch.Tensor:
        out = out.clone()
        out[:, :n_skip] = F.linear(args[0][:, :n_skip], weight, module.bias)
        return out

    return hook


# -- calibration and evaluation ---------------------------------------------------------------


def with_prefix(ids: torch.Tensor, prefix: Sequence[int]) -> torch.Tensor:
    """ids [N, T] with the same prefix tokens before every window."""
    if not prefix:
        return ids
    head = torch.as_tensor(list(prefix), dtype=ids.dtype, device=ids.device)
    return torch.cat([head.expand(ids.shape[0], -1), ids], dim=1)


def check_causal(model: nn.Module, key: str) -> None:
    """Refuse an encoder before any evaluation work: a one-line ConfigError naming `key`."""
    causal = getattr(getattr(model, "cfg", None), "causal", True)
    check(bool(causal), key, f"{QUANT_CAUSAL_ONLY}; this model is an encoder (causal=false)")


def take_batches(batches: Sequence[torch.Tensor], n: int) -> list[torch.Tensor]:
    """The first n calibration batches; a ConfigError naming the key when fewer exist."""
    out = list(batches)[:n]
    check(
        len(out) == n,
        "quant.calibration_batches",
        f"needs {n} calibration batches, only {len(out)} given",
    )
    return out


def calibrate(
    model: nn.Module, batches: Sequence[torch.Tensor], prefix: Sequence[int] = ()
) -> dict[str, tuple[float, float]]:
    """(min, max) of every quantised linear's input over the batches, prefix positions left out."""
    ranges: dict[str, tuple[float, float]] = {}
    shared = _SharedInput()

    def see(name: str, x: torch.Tensor) -> None:
        lo, hi = shared.get(x, None, lambda: tuple(float(v) for v in torch.aminmax(x)))
        old = ranges.get(name)
        ranges[name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))

    device = model_device(model)
    skip = model_skip(model) + len(prefix)
    with eval_mode(model), watch_inputs(model, see, skip), stop_before_head(model) as run:
        for ids in batches:
            run(with_prefix(ids.to(device), prefix))
    return ranges


class InputStats:
    """Running outlier statistics of the quantised linears' inputs (following tokens only)."""

    def __init__(self, eta: float = 64.0) -> None:
        self.eta = eta
        self.max_abs: dict[str, float] = {}
        self.ratios: dict[str, list[torch.Tensor]] = {}
        self.n_outliers: dict[str, list[torch.Tensor]] = {}
        self._shared = _SharedInput()

    def __call__(self, name: str, x: torch.Tensor) -> None:
        peak, ratio, count = self._shared.get(x, None, lambda: self._stats(x))
        self.max_abs[name] = max(self.max_abs.get(name, 0.0), peak)
        self.ratios.setdefault(name, []).append(ratio)
        self.n_outliers.setdefault(name, []).append(count)

    def _stats(self, x: torch.Tensor) -> tuple[float, torch.Tensor, torch.Tensor]:
        tmax = outliers.token_max(x)
        mask = outliers.outlier_mask(tmax, self.eta)
        return float(tmax.max()), outliers.max_over_median(tmax).cpu(), mask.sum(1).cpu()

    def summary(self) -> dict[str, float]:
        """`max_act` (largest |x| of any linear input) and `token_max_over_median` (the largest,
        over linears, of the window-mean token-wise top-1 / median)."""
        if not self.max_abs:
            return {}
        return {
            "max_act": max(self.max_abs.values()),
            "token_max_over_median": max(float(torch.cat(r).mean()) for r in self.ratios.values()),
        }


def perplexity(
    model: nn.Module,
    ids: torch.Tensor,
    prefix: Sequence[int] = (),
    batch_size: int = 32,
) -> float:
    """exp(mean next-token NLL) over every window's predictions of tokens 1..T-1.

    With a prefix the same predictions are scored (the prefix is context only), so the FP and
    FP + prefix numbers compare like with like.
    """
    device = model_device(model)
    total, count = 0.0, 0
    P = len(prefix)
    with eval_mode(model):
        for start in range(0, ids.shape[0], batch_size):
            chunk = ids[start : start + batch_size].to(device)
            logits = model(with_prefix(chunk, prefix))[:, P:]
            nll = F.cross_entropy(
                logits[:, :-1].float().reshape(-1, logits.shape[-1]),
                chunk[:, 1:].reshape(-1),
                reduction="sum",
            )
            total += float(nll)
            count += chunk[:, 1:].numel()
    return math.exp(total / max(count, 1))


def quant_values(
    model: nn.Module,
    eval_ids: torch.Tensor,
    calib: Sequence[torch.Tensor],
    cfg: QuantConfig,
    prefix: Sequence[int] = (),
    eta: float = 64.0,
    weights: dict[str, torch.Tensor] | None = None,
) -> dict[str, float]:
    """FP perplexity (with the input statistics of the same pass), then each mode's W/A
    fake-quantised perplexity and its increase over FP; keys relative to `quant/`.
    `weights`: the quantised weights, when the caller shares them between several calls."""
    skip = model_skip(model) + len(prefix)
    stats = InputStats(eta)
    with watch_inputs(model, stats, skip):
        fp = perplexity(model, eval_ids, prefix, cfg.batch_size)
    out = {"ppl/fp": fp, **stats.summary()}
    ranges = calibrate(model, calib, prefix) if "per_tensor_static" in cfg.modes else None
    if weights is None:
        weights = quantized_weights(model, cfg)
    for mode in cfg.modes:
        with fake_quant(model, cfg, mode, ranges, skip, weights):
            ppl = perplexity(model, eval_ids, prefix, cfg.batch_size)
        out[f"ppl/{mode}"] = ppl
        out[f"ppl_increase/{mode}"] = ppl - fp
    return out


def frame(values: dict[str, float], prefix: str) -> pd.DataFrame:
    """Model rows (layer -1, head -1) named prefix + key."""
    df = pd.DataFrame([(-1, -1, prefix + k, float(v)) for k, v in values.items()], columns=COLUMNS)
    return df.astype({"layer": "int64", "head": "int64", "metric": "string", "value": "float64"})


def w8a8_eval(
    model: nn.Module,
    eval_ids: torch.Tensor,
    calib_batches: Sequence[torch.Tensor],
    cfg: QuantConfig = QuantConfig(),  # noqa: B008 - frozen, so sharing is safe
) -> pd.DataFrame:
    """Rows `quant/bits`, `quant/ppl/fp`, `quant/ppl/{mode}`, `quant/ppl_increase/{mode}`,
    `quant/max_act`, `quant/token_max_over_median` for `model` on `eval_ids` [N, T], with the
    static ranges from the first `cfg.calibration_batches` of `calib_batches` ([n, T] each)."""
    calib = take_batches(calib_batches, cfg.calibration_batches)
    values = {"bits": float(cfg.bits), **quant_values(model, eval_ids, calib, cfg)}
    return frame(values, "quant/")
