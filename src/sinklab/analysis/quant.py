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
    q = torch.clamp(torch.round(x / scale) + zero, 0, levels)
    return (q - zero) * scale


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


@contextmanager
def watch_inputs(
    model: nn.Module, fn: Callable[[str, torch.Tensor], None], n_skip: int = 0
) -> Iterator[None]:
    """Call fn(name, x[:, n_skip:]) with the input of every quantised linear, for the block only.

    The hooks exist only inside the block, so a model that is not being measured pays nothing.
    """
    handles = [
        lin.register_forward_pre_hook(
            lambda _m, args, name=name: fn(name, args[0][:, n_skip:].detach())
        )
        for name, lin in quantised_linears(model)
    ]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextmanager
def fake_quant(
    model: nn.Module,
    cfg: QuantConfig,
    mode: str,
    ranges: dict[str, tuple[float, float]] | None = None,
    n_skip: int = 0,
) -> Iterator[nn.Module]:
    """The model with fake-quantised weights and activations for the block; restored after.

    Weights: each linear's weight tensor is swapped for a quantised copy and the original
    tensor object put back on exit (bit-identical). Activations: a pre-hook quantises positions
    n_skip.. of every linear's input in `mode` (static ranges from `calibrate`). The first
    n_skip positions (sink tokens, a prefix) stay exact: a forward hook recomputes their
    outputs with the full-precision weight, as if their keys and values had been cached from
    the full-precision model.
    """
    check_choice("quant.modes", mode, MODES)
    if mode == "per_tensor_static":
        missing = [n for n, _ in quantised_linears(model) if ranges is None or n not in ranges]
        if missing:
            raise ValueError(f"per_tensor_static needs calibrated ranges; missing {missing[:3]}")
    originals: list[tuple[nn.Linear, torch.Tensor]] = []
    with ExitStack() as stack:
        try:
            for name, lin in quantised_linears(model):
                w = lin.weight.data
                originals.append((lin, w))
                with torch.no_grad():
                    lin.weight.data = quantize_weight(w, cfg.bits, cfg.weight_granularity)
                rng = ranges.get(name) if ranges else None
                pre = _act_hook(cfg.bits, mode, rng, n_skip)
                stack.callback(lin.register_forward_pre_hook(pre).remove)
                if n_skip:
                    post = _exact_prefix_hook(w, n_skip)
                    stack.callback(lin.register_forward_hook(post).remove)
            yield model
        finally:
            for lin, w in originals:
                lin.weight.data = w


def _act_hook(
    bits: int, mode: str, rng: tuple[float, float] | None, n_skip: int
) -> Callable[..., Any]:
    def hook(_module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]
        tail = quantize_activation(x[:, n_skip:], bits, mode, rng)
        x = torch.cat([x[:, :n_skip], tail], dim=1) if n_skip else tail
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

    def see(name: str, x: torch.Tensor) -> None:
        lo, hi = float(x.min()), float(x.max())
        old = ranges.get(name)
        ranges[name] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))

    device = model_device(model)
    with eval_mode(model), watch_inputs(model, see, model_skip(model) + len(prefix)):
        for ids in batches:
            model(with_prefix(ids.to(device), prefix))
    return ranges


class InputStats:
    """Running outlier statistics of the quantised linears' inputs (following tokens only)."""

    def __init__(self, eta: float = 64.0) -> None:
        self.eta = eta
        self.max_abs: dict[str, float] = {}
        self.ratios: dict[str, list[torch.Tensor]] = {}
        self.n_outliers: dict[str, list[torch.Tensor]] = {}

    def __call__(self, name: str, x: torch.Tensor) -> None:
        tmax = outliers.token_max(x)
        self.max_abs[name] = max(self.max_abs.get(name, 0.0), float(tmax.max()))
        self.ratios.setdefault(name, []).append(outliers.max_over_median(tmax).cpu())
        self.n_outliers.setdefault(name, []).append(
            outliers.outlier_mask(tmax, self.eta).sum(1).cpu()
        )

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
) -> dict[str, float]:
    """FP perplexity (with the input statistics of the same pass), then each mode's W/A
    fake-quantised perplexity and its increase over FP; keys relative to `quant/`."""
    skip = model_skip(model) + len(prefix)
    stats = InputStats(eta)
    with watch_inputs(model, stats, skip):
        fp = perplexity(model, eval_ids, prefix, cfg.batch_size)
    out = {"ppl/fp": fp, **stats.summary()}
    ranges = calibrate(model, calib, prefix) if "per_tensor_static" in cfg.modes else None
    for mode in cfg.modes:
        with fake_quant(model, cfg, mode, ranges, skip):
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
