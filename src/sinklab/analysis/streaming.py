"""Streaming evaluation with a bounded KV cache (StreamingLLM; metrics.md section 6).

On one long held-out stream of T tokens (default 16 training windows) and a cache of C
tokens (default half a window, the current token included), each condition gives the NLL of
every next-token prediction, indexed by the query position t = 0 .. T-2:

    dense                plain causal attention over the whole stream (length extrapolation)
    window, window_shift the last C tokens; `_shift`: positions re-indexed inside the cache
    sinks{k}[_shift]     the first k tokens plus the last C - k (StreamingLLM's 4 + recent)
    recompute            each token re-encoded from its own last C tokens: the oracle

Extra slots of the model (sink logit, kv bias, sink tokens) are always kept on top of the C.
All positions t < C see every earlier token, so the conditions differ only from t = C on
(the first query after an eviction); the headline perplexities are over t >= C.

The cache conditions (and dense) run on one of two paths that give the same NLL (within
1e-5 in fp32): one masked pass (`sinklab.model.streaming`, exact against a token-by-token
rolling decode), fastest for short streams such as the probe callback's, or a rolling KV cache
fed in chunks (`sinklab.model.rolling_cache`), whose memory does not grow with T. `_path`
keeps the masked pass (the faster one while it fits: the probe callback's default stream of
32 C tokens on the default model needs about 0.1 GB) and takes the rolling cache when the
masked pass would hold more than `MASKED_BUDGET_BYTES` (SmolLM2-135M at C = 256: past
about 2,800 tokens). Dense on the rolling path is a cache as long as the stream. The
oracle runs the model on all T - C + 1 windows, batched.
The 2 x 2 of sinks x shift separates the missing sink from RoPE extrapolation of the query
position: `window` collapses from both, `window_shift` only from the missing sink.

Rows (model rows, layer = head = -1) go beside the probe metrics; names in `registry.py`.
Per-position NLL is stored as means over buckets of `bucket_len` query positions (default
C // 4, so bucket edges fall on the cache-fill point t = C): per-position rows would be
T x conditions (about 24k per checkpoint), and one stream's single-token NLLs are too noisy to
plot unsmoothed. `stream_nll` returns the full per-position tensors for finer plots.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass

import pandas as pd
import torch
import torch.nn.functional as F

from sinklab.analysis.capture import eval_mode, model_device
from sinklab.analysis.measure import COLUMNS
from sinklab.configs import from_mapping
from sinklab.errors import ConfigError, check, check_choice
from sinklab.model.position import position_class
from sinklab.model.rolling_cache import stream_token_nll
from sinklab.model.streaming import StreamPlan
from sinklab.runs.schedule import log_spaced_steps

FAMILIES = ("dense", "window", "sinks", "recompute")
SHIFT_MODES = ("noshift", "shift")
PATHS = ("auto", "masked", "rolling")
# The masked pass is picked while its estimated peak (`masked_pass_bytes`) stays under this
# budget; past it, the rolling cache.
MASKED_BUDGET_BYTES = 1 << 30
_NAME = re.compile(r"^(?:(dense|recompute)|(window)|sinks([1-9]\d*))(_shift)?$")


@dataclass(frozen=True)
class Condition:
    """One evaluation condition: `kind` dense | cache | recompute; a cache keeps `n_sinks`."""

    name: str
    kind: str
    n_sinks: int = 0
    shift: bool = False


def parse_condition(name: str) -> Condition:
    """`sinks4_shift` -> Condition(kind="cache", n_sinks=4, shift=True); ConfigError otherwise."""
    m = _NAME.match(name)
    ok = m is not None and not (m.group(1) and m.group(4))
    check(
        ok,
        "stream.conditions",
        f"unknown condition {name!r}; use {', '.join(FAMILIES)}, window_shift, "
        "sinks<k> or sinks<k>_shift (k >= 1)",
    )
    if m.group(1):
        return Condition(name, m.group(1))
    return Condition(name, "cache", int(m.group(3) or 0), bool(m.group(4)))


@dataclass(frozen=True)
class StreamConfig:
    """What the streaming evaluation runs.

    `stream_len` T (None: `stream_windows` training windows) and `cache_len` C (None: half a
    training window) are filled by `resolve(window)`. `conditions` holds families (expanded
    over `sink_counts` x `shift_modes`) or single names like `sinks4_shift`. `bucket_len`
    (None: C // 4) sets the per-position NLL rows. The oracle costs T - C forwards of C
    tokens, C times the tokens of one cache pass, so it can run at every
    `recompute_stride`-th query position from t = C - 1 on; ratios pair each condition with
    it on those positions. The default here is 1, every position, so that every perplexity
    and ratio of a measurement (a pretrained model: `sinklab.analyze target=smollm2`) rests on
    the same T - 1 - C positions (a stride of 16 left SmolLM2's ratios on 111 of 1,791
    positions, a subset that understated the window's collapse; docs/pretrained.md). The
    training probe keeps a sparse oracle for cost (`ProbeStreamConfig`).
    `recompute_batch_size` is the oracle's windows per forward; `every_n_probes` how often
    a training callback runs the evaluation.
    """

    stream_len: int | None = None
    stream_windows: int = 16
    cache_len: int | None = None
    sink_counts: tuple[int, ...] = (1, 2, 4, 8)
    shift_modes: tuple[str, ...] = SHIFT_MODES
    conditions: tuple[str, ...] = FAMILIES
    bucket_len: int | None = None
    recompute_stride: int = 1
    recompute_batch_size: int = 128
    every_n_probes: int = 1

    def __post_init__(self) -> None:
        for key in ("sink_counts", "shift_modes", "conditions"):  # Hydra hands lists
            object.__setattr__(self, key, tuple(getattr(self, key)))
        for key in ("stream_windows", "recompute_stride", "recompute_batch_size", "every_n_probes"):
            check(
                getattr(self, key) >= 1, f"stream.{key}", f"must be >= 1, got {getattr(self, key)}"
            )
        for key in ("stream_len", "cache_len", "bucket_len"):
            value = getattr(self, key)
            check(value is None or value >= 1, f"stream.{key}", f"must be >= 1, got {value}")
        check(len(self.shift_modes) > 0, "stream.shift_modes", "needs at least one mode")
        for mode in self.shift_modes:
            check_choice("stream.shift_modes", mode, SHIFT_MODES)
        check(
            len(self.sink_counts) > 0 and all(k >= 1 for k in self.sink_counts),
            "stream.sink_counts",
            f"must be >= 1 (k = 0 is the window condition), got {list(self.sink_counts)}",
        )
        check(len(self.conditions) > 0, "stream.conditions", "needs at least one condition")
        conditions = self.condition_list()  # raises on an unknown name
        C, T = self.cache_len, self.stream_len
        if C is not None:
            if "sinks" in self.conditions:
                check(
                    max(self.sink_counts) < C,
                    "stream.sink_counts",
                    f"{list(self.sink_counts)}: every k must be < stream.cache_len={C}",
                )
            big = [c.name for c in conditions if c.kind == "cache" and c.n_sinks >= C]
            check(not big, "stream.conditions", f"{big} keep k >= stream.cache_len={C} sinks")
        if C is not None and T is not None:
            check(C < T, "stream.cache_len", f"{C} is not shorter than stream.stream_len={T}")

    def resolve(self, window: int) -> StreamConfig:
        """This config with T, C and the bucket length filled in from the training `window`."""
        check(window >= 2, "stream.cache_len", f"training window {window} is too short")
        T = self.stream_len if self.stream_len is not None else self.stream_windows * window
        C = self.cache_len if self.cache_len is not None else window // 2
        bucket = self.bucket_len if self.bucket_len is not None else max(1, C // 4)
        values = {**self.to_dict(), "stream_len": T, "cache_len": C, "bucket_len": bucket}
        return StreamConfig(**values)

    def condition_list(self) -> tuple[Condition, ...]:
        """The conditions to run, families expanded, in order, without repeats."""
        names: list[str] = []
        suffixes = ["" if mode == "noshift" else "_shift" for mode in self.shift_modes]
        for entry in self.conditions:
            if entry == "window":
                names += [f"window{s}" for s in suffixes]
            elif entry == "sinks":
                names += [f"sinks{k}{s}" for k in self.sink_counts for s in suffixes]
            else:
                names.append(entry)
        return tuple(parse_condition(n) for n in dict.fromkeys(names))

    def to_dict(self) -> dict:
        out = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, values: dict) -> StreamConfig:
        """Build from a plain mapping (a Hydra node); an unknown key is a one-line ConfigError."""
        return from_mapping(cls, values, "stream")


STREAM_KEY = "callbacks.probe.stream"


@dataclass(frozen=True)
class ProbeStreamConfig(StreamConfig):
    """`callbacks.probe.stream`: the streaming evaluation (StreamConfig's keys) plus `enabled`
    and its schedule (`due`).

    The defaults keep the default run's probe share within 3 % with the evaluation at every
    probe step: R_win and R_4 only (window_shift, sinks4_shift and the oracle; no dense pass)
    and a sparse oracle (every 64th query position, 31 on the default 2048-token stream; the
    ratios pair positions, so their noise is that of the per-position NLL differences).
    `every_n_probes: n` thins it to every n-th probe step (the last always included).
    """

    enabled: bool = True
    every_n_probes: int = 1
    conditions: tuple[str, ...] = ("window", "sinks", "recompute")
    sink_counts: tuple[int, ...] = (4,)
    shift_modes: tuple[str, ...] = ("shift",)
    recompute_stride: int = 64

    def core(self) -> StreamConfig:
        """The plain StreamConfig (without `enabled`), what `stream_eval` takes."""
        values = self.to_dict()
        values.pop("enabled")
        return StreamConfig(**values)

    def due(self, step: int, max_steps: int, log_spaced_until: int, every: int) -> bool:
        """Whether the probe at `step` also streams: every `every_n_probes`-th step of the
        probe schedule, and always the last (`streams_at`)."""
        steps = log_spaced_steps(max_steps, log_spaced_until, every)
        return streams_at(step, steps, self.every_n_probes, max_steps)

    def resolved(
        self, window: int, pos: str | None = None, max_seq_len: int | None = None
    ) -> StreamConfig:
        """The StreamConfig of a run with training window `window` (T, C and buckets filled),
        checked against the model's positions; a bad combination is a one-line ConfigError
        keyed `callbacks.probe.stream.<key>`, raised before training starts."""
        try:
            cfg = self.core().resolve(window)
            limit = None
            if pos is not None and max_seq_len is not None:
                limit = position_class(pos).max_tokens(max_seq_len)
            if limit is not None:
                check(
                    cfg.cache_len <= limit,
                    "stream.cache_len",
                    f"{cfg.cache_len} is past the {pos} position table "
                    f"(model.max_seq_len={max_seq_len})",
                )
        except ConfigError as err:
            key = f"{STREAM_KEY}.{err.key.rsplit('.', 1)[-1]}"
            raise ConfigError(key, str(err).removeprefix(f"{err.key}: ")) from None
        return cfg


@dataclass
class StreamNLL:
    """Per-condition NLL [T-1] at query positions t = 0 .. T-2 (predicting token t+1), and
    the conditions left out with the reason."""

    nll: dict[str, torch.Tensor]
    skipped: dict[str, str]
    stream_len: int
    cache_len: int


def stream_nll(
    model: torch.nn.Module, stream_ids: torch.Tensor, cfg: StreamConfig, path: str = "auto"
) -> StreamNLL:
    """Run every condition of `cfg` (resolved: C set) on `stream_ids` [T]. `path` auto picks
    the masked pass or the rolling cache per condition (`_path`); masked / rolling force one."""
    check_choice("path", path, PATHS)
    T, C = _check_inputs(model, stream_ids, cfg)
    ids = stream_ids.to(model_device(model))
    out, skipped = {}, {}
    with eval_mode(model):
        for cond in cfg.condition_list():
            reason = _undefined(model, cond, T)
            if reason:
                skipped[cond.name] = reason
            elif cond.kind == "recompute":
                out[cond.name] = recompute_nll(
                    model, ids, C, cfg.recompute_batch_size, cfg.recompute_stride
                )
            elif _path(model, T, C, cond, path) == "rolling":
                out[cond.name] = _rolling_nll(model, ids, C, cond)
            else:
                out[cond.name] = _pass_nll(model, ids, C, cond)
    return StreamNLL(out, skipped, T, C)


def stream_eval(
    model: torch.nn.Module, stream_ids: torch.Tensor, cfg: StreamConfig, path: str = "auto"
) -> pd.DataFrame:
    """Tidy rows (layer, head, metric, value) of every condition; skipped ones have none.
    The rows do not depend on `path` (see `stream_nll`)."""
    result = stream_nll(model, stream_ids, cfg, path)
    df = stream_rows(result, cfg.bucket_len or max(1, result.cache_len // 4))
    df.attrs["stream_skipped"] = dict(result.skipped)
    return df


def stream_rows(result: StreamNLL, bucket_len: int) -> pd.DataFrame:
    """Perplexities (t >= C and all t), ratios to the oracle, bucketed NLL, and the lengths.

    NaN NLL (oracle positions skipped by its stride) are left out of every mean; a ratio
    uses only the positions t >= C where the oracle was run, for both of its terms.
    """
    C = result.cache_len
    rows = [
        ("stream/stream_len", float(result.stream_len)),
        ("stream/cache_len", float(C)),
        ("stream/bucket_len", float(bucket_len)),
    ]
    oracle = result.nll.get("recompute")
    paired = oracle[C:].isfinite() if oracle is not None else None
    for name, nll in result.nll.items():
        rows.append((f"stream/ppl/{name}", _ppl(nll[C:])))
        rows.append((f"stream/ppl_all/{name}", _ppl(nll)))
        if paired is not None and name != "recompute":
            ratio = _ppl(nll[C:][paired]) / _ppl(oracle[C:][paired])
            rows.append((f"stream/ratio/{name}", ratio))
        starts, means = bucket_means(nll, bucket_len)
        rows += [(f"stream/nll/{name}/at_{s}", m) for s, m in zip(starts, means, strict=True)]
    df = pd.DataFrame([(-1, -1, m, v) for m, v in rows], columns=COLUMNS)
    return df.astype({"layer": "int64", "head": "int64", "metric": "string", "value": "float64"})


def bucket_means(nll: torch.Tensor, bucket_len: int) -> tuple[list[int], list[float]]:
    """The first position and the NaN-skipping mean NLL of each run of `bucket_len` query
    positions, for the buckets with at least one finite value; one tensor op for them all
    (a Python loop over 128 buckets x 3 conditions cost a fifth of an evaluation)."""
    n = len(nll)
    n_buckets = -(-n // bucket_len)
    padded = torch.full((n_buckets * bucket_len,), float("nan"), dtype=torch.float64)
    padded[:n] = nll.double()
    grid = padded.view(n_buckets, bucket_len)
    means = grid.nanmean(dim=1)
    keep = grid.isfinite().any(dim=1)
    starts = (torch.arange(n_buckets) * bucket_len)[keep]
    return starts.tolist(), means[keep].tolist()


def _ppl(nll: torch.Tensor) -> float:
    return math.exp(float(nll.double().nanmean()))


# -- conditions -------------------------------------------------------------------------------


def _check_inputs(
    model: torch.nn.Module, stream_ids: torch.Tensor, cfg: StreamConfig
) -> tuple[int, int]:
    C = cfg.cache_len
    check(C is not None, "stream.cache_len", "unset: build the config with resolve(window)")
    if stream_ids.dim() != 1:
        raise ValueError(f"stream_ids must be [T], got shape {tuple(stream_ids.shape)}")
    T = stream_ids.shape[0]
    check(
        T > C, "stream.stream_len", f"the stream has {T} tokens, not more than stream.cache_len={C}"
    )
    mcfg = model.cfg
    check(
        mcfg.position.fits(C),
        "stream.cache_len",
        f"{C} is past the {mcfg.pos} position table (model.max_seq_len={mcfg.max_seq_len})",
    )
    return T, C


def _undefined(model: torch.nn.Module, cond: Condition, T: int) -> str | None:
    """Why a condition cannot run on this model, or None."""
    mcfg = model.cfg
    keeps_stream_positions = cond.kind == "dense" or (cond.kind == "cache" and not cond.shift)
    if keeps_stream_positions and not mcfg.position.fits(T):
        return (
            f"{mcfg.pos} positions stop at model.max_seq_len={mcfg.max_seq_len}; without shift a "
            f"{T}-token stream needs positions up to {T - 1}"
        )
    return None


def masked_pass_bytes(model: torch.nn.Module, T: int, C: int) -> int:
    """A rough fp32 peak, above the weights, of one masked pass over T tokens with a cache of
    C, and its NLL: per token, a layer's scores / bias / weights and their temporaries over
    the key band (6 H (C + B), B <= C), the MLP's hidden (6 d_ff) and the residual stream and
    projections (16 d), plus the V logits. Calibrated on SmolLM2-135M at T = 1024, C = 256
    (380 kB a token estimated; 200 kB measured for the pass plus 197 kB of logits)."""
    mcfg = model.cfg
    per_token = 6 * mcfg.n_heads * 2 * C + 6 * (mcfg.d_ff or 0) + 16 * mcfg.d_model
    return 4 * T * (per_token + mcfg.vocab_size)


def _path(model: torch.nn.Module, T: int, C: int, cond: Condition, path: str) -> str:
    """masked | rolling for a dense or cache condition (dense: a cache of the whole stream)."""
    if path != "auto":
        return path
    if cond.kind == "dense":  # O(T^2) on the masked path: the band is the whole stream
        C = T
    return "rolling" if masked_pass_bytes(model, T, C) > MASKED_BUDGET_BYTES else "masked"


def _rolling_nll(
    model: torch.nn.Module, ids: torch.Tensor, C: int, cond: Condition
) -> torch.Tensor:
    """NLL of one condition through the rolling cache, chunk by chunk (never T x V logits);
    dense is a window as long as the stream, so nothing is evicted."""
    T = len(ids)
    if cond.kind == "dense":
        return stream_token_nll(model, ids, T, 0, False, chunk=_chunk(min(T, 512)))
    return stream_token_nll(model, ids, C, cond.n_sinks, cond.shift, chunk=_chunk(C))


def _chunk(C: int) -> int:
    """Query chunk of the rolling path: about C / 2, within 32 .. 256 (small chunks spend
    their time in Python, large ones in score columns no query sees)."""
    return min(256, max(32, C // 2))


def _pass_nll(model: torch.nn.Module, ids: torch.Tensor, C: int, cond: Condition) -> torch.Tensor:
    """NLL of one masked pass: dense (no plan) or a bounded cache."""
    plan = None
    if cond.kind == "cache":
        S = model.cfg.n_sink_tokens
        plan = StreamPlan(len(ids), C, cond.n_sinks, cond.shift, n_prefix=S)
    hidden = model.forward_stream(ids[None], plan, hidden=True)[0]
    return _nll(model, hidden[:-1], ids[1:])


def recompute_nll(
    model: torch.nn.Module,
    ids: torch.Tensor,
    cache_len: int,
    batch_size: int = 128,
    stride: int = 1,
    offset: int = 0,
) -> torch.Tensor:
    """The oracle: NLL [T-1] with each query t re-encoded from ids[max(0, t-C+1) .. t].

    The stream is unfolded into its windows of W = min(C, T) tokens: window 0 gives the
    predictions t < W - 1 (causal, so its prefix rows are the shorter contexts), and window w
    the prediction at t = w + W - 1 from its last row. With `stride` s only windows
    w = offset, offset + s, ... run and the other positions t >= W - 1 hold NaN; the s
    offsets 0 .. s-1 together give the stride-1 oracle (a long run done in resumable parts).
    """
    check(0 <= offset < stride, "offset", f"must be in 0 .. stride-1={stride - 1}, got {offset}")
    T = len(ids)
    W = min(cache_len, T)
    windows = ids.unfold(0, W, 1)
    starts = torch.arange(
        offset, T - W, stride, device=ids.device
    )  # the last window predicts nothing
    head = model.forward_stream(windows[:1], hidden=True)[0, :-1]
    tails = [
        model.forward_stream(windows[starts[i : i + batch_size]], hidden=True)[:, -1]
        for i in range(0, len(starts), batch_size)
    ]
    nll = torch.full((T - 1,), float("nan"))
    nll[: W - 1] = _nll(model, head, ids[1:W])
    if tails:  # none when the cache holds the whole stream
        nll[W - 1 + starts.cpu()] = _nll(model, torch.cat(tails), ids[W + starts])
    return nll


def _nll(model: torch.nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    logits = model.head(hidden).float()  # soft-capped where the model caps its logits
    return F.cross_entropy(logits, targets, reduction="none").cpu()


def streams_at(step: int, probe_steps: list[int], every_n_probes: int, max_steps: int) -> bool:
    """Whether the probe at `step` runs the streaming evaluation: every `every_n_probes`-th
    step of the probe schedule `probe_steps` (0 first), and always the last step (or a step
    off the schedule, where a run ended early). The training callback and sinklab-analyze
    both ask this, so a re-measured run has stream rows at the steps the callback had."""
    if step == max_steps or step not in probe_steps:
        return True
    return probe_steps.index(step) % every_n_probes == 0
