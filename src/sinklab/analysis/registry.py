"""`METRICS`: every metric name `measure` can emit, with a one-sentence definition.

Names with `{...}` are templates: `{k}` a 0-based key position, `{i}` a 0-based rank,
`{n}` a 1-based rank, `{slot}` an extra slot's name. Row convention (tidy table): a
per-head metric has rows at (layer, head), at (layer, -1) the mean over the layer's heads
and at (-1, -1) the mean over all layers and heads, unless its definition says otherwise;
a per-layer metric has head = -1. `frames/*` rows are per head, and at head = -1 they are
measured on the head-averaged map (not the mean of the heads); only `frames/class` has a
model row. docs/metrics.md renders this table (`metrics_markdown`); a test checks that every
emitted name resolves here and that every entry is emitted.

Causal models and encoders (`model.causal=false`). Every metric is defined for both. Where a
definition averages over the queries that can see a key, a causal model has t >= k and an
encoder all T queries; each such entry says both. Definitions over "queries t >= 1" (the
first-token mass, BOS attention, norm ratios) mean the same in both. The dormancy
intervention (next-token loss) and the streaming evaluation (a KV cache) are causal-only.
"""

from __future__ import annotations

import re

METRICS: dict[str, str] = {
    # sinks (metrics.md section 1); A is the attention of one window, layer and head
    "sink/alpha/key_{k}": "Gu et al.'s importance of key k, the mean attention it gets from the queries that see it: sum_{t>=k} A[t,k] / (T-k) in a causal model, sum_t A[t,k] / T over all T queries in an encoder; averaged over windows.",
    "sink/alpha_0_max": "Largest window-averaged alpha_0 over the heads of a layer (layer rows) or of the model (model row).",
    "sink/sink1_pct": "Gu et al.'s Sink_1: 100 x the share of (window, head) with alpha_0 > eps (0.3) (alpha_0 over all T queries in both causal models and encoders).",
    "sink/sink_pct/key_{k}": "Gu et al.'s Sink score for key position k > 0: 100 x the share of (window, head) with alpha_k > eps (alpha_k over queries t >= k in a causal model, all T in an encoder).",
    "sink/sink_ratio_pct": "The Spike paper's sink ratio: 100 x the share of (window, head) with max_{k<=T/2} sum_t A[t,k]/T > eps (all T queries, causal or encoder).",
    "sink/first_token_mass": "Mean over queries t >= 1 of A[t,0], averaged over windows (the same for causal models and encoders).",
    # metrics.query_start > 0 (names.from_query_start): the same scores on the queries t >= query_start only
    "sink/sink1_pct/from_query_start": "Sink_1 on the queries t >= metrics.query_start only: 100 x the share of (window, head) with mean_{t>=query_start} A[t,0] > eps (causal or encoder); emitted when query_start > 0.",
    "sink/sink_ratio_pct/from_query_start": "The sink ratio on the queries t >= metrics.query_start only: 100 x the share of (window, head) with max_{k<=T/2} sum_{t>=query_start} A[t,k] / (T - query_start) > eps; emitted when query_start > 0.",
    "sink/first_token_mass/from_query_start": "Mean over queries t >= max(1, metrics.query_start) of A[t,0], averaged over windows; emitted when query_start > 0.",
    "sink/alpha_0_max/from_query_start": "Largest window-averaged mean_{t>=query_start} A[t,0] over the heads of a layer (layer rows) or of the model (model row); emitted when metrics.query_start > 0.",
    "sink/proxy_scores": "Model row: 1 when the attention was not normalised and the sink scores use the proxy |s|/sum|s|, else 0.",
    "slot_mass/{slot}": "Mean attention on the extra slot over all T queries (an always-visible slot), averaged over windows.",
    "slot_sink_pct/{slot}": "100 x the share of (window, head) whose slot mass exceeds eps: the Sink score of the extra slot.",
    # query-key geometry
    "qk/k0_norm": "|k_0|, the first key's norm, averaged over windows (per query head; GQA keys are shared).",
    "qk/kt_norm_mean": "Mean |k_t| over keys t >= 1, averaged over windows.",
    "qk/cos_q_k0": "Mean cos(q_t, k_0) over queries t >= 1, averaged over windows.",
    "qk/cos_q_kj": "Mean cos(q_t, k_j) over the pairs a query sees but key 0: 1 <= j <= t in a causal model, all t, j >= 1 in an encoder; averaged over windows.",
    # massive activations (metrics.md section 2), per layer on the residual stream after the block
    "massive/top{n}": "The n-th largest |h| of a window over positions and channels, averaged over windows (layer rows).",
    "massive/top{n}_position": "Position of a window's n-th largest |h|, the most common one over windows (layer rows).",
    "massive/top{n}_channel": "Channel of a window's n-th largest |h|, the most common one over windows (layer rows).",
    "massive/top{n}_location_share": "Share of windows whose n-th largest |h| sits at the reported (position, channel) (layer rows).",
    "massive/median": "Median |h| of a window (lower median), averaged over windows (layer rows).",
    "massive/top1_over_median": "Per-window top-1 |h| / median |h|, averaged over windows: the small-scale massive-activation curve (layer rows).",
    "massive/sun_count": "Mean number of values per window with |a| > 100 and |a| >= 1000 x the window's median: Sun et al.'s rule (layer rows).",
    "massive/norm_ratio/resid": "mean_n |h_0| / mean_{n,t>=1} |h_t| on the residual stream after the block (layer rows).",
    "massive/norm_ratio/key": "mean_n |k_0| / mean_{n,t>=1} |k_t| per key head (head = kv head index).",
    "massive/norm_ratio/value": "mean_n |v_0| / mean_{n,t>=1} |v_t| per value head (head = kv head index).",
    "spike/channel/rank_{i}": "The residual channel with the i-th largest |h| in the probe batch, analysed below (layer rows, SwiGLU/GeGLU only).",
    "spike/u_fro/rank_{i}": "|U_k|_F for that channel k, U_k = sum_j W_down[k,j] W_gate[j,:]^T W_up[j,:] (layer rows).",
    "spike/top_eig/rank_{i}": "The largest-magnitude (signed) eigenvalue of S_k = (U_k + U_k^T)/2 for that channel (layer rows).",
    "spike/eig_share/rank_{i}": "|top eigenvalue| / sum |eigenvalues| of S_k: 1 = one dominant direction (layer rows).",
    "spike/eigvec_align": "Mean |cos| between the top eigenvector of the rank-0 channel's S_k and those of the other ranks (layer rows).",
    "spike/u_fro_median": "Median |U_k|_F over all output channels, the baseline for the spike channels (layer rows).",
    # reference frames (metrics.md section 3); layer rows are measured on the head-averaged map
    "frames/ref_count": "Number of reference tokens: keys with mean received attention > 0.1, capped at 30 % of keys; the fallback count when none passes.",
    "frames/ref_fallback": "1 when no key passed 0.1 and the top 10 % of keys were taken as reference tokens, else 0.",
    "frames/ref_position/rank_{i}": "Position of the i-th reference token by received attention (rows only for existing reference tokens).",
    "frames/ref_mass/rank_{i}": "Mean attention received, sum_t A[t,k]/T, by the i-th reference token.",
    "frames/indegree_gini": "Gini coefficient of in-degrees of the graph with edges t->k where A[t,k] > tau (0.02), t != k.",
    "frames/star_likeness": "0.3 x max in-degree / (T-1) + 0.7 x in-degree Gini of the thresholded graph.",
    "frames/degree_centralisation": "sum_i (d_max - d_i) / (T-1)^2 over in-degrees of the thresholded graph.",
    "frames/fiedler": "Second-smallest Laplacian eigenvalue of the symmetrised, thresholded weighted graph.",
    "frames/participation_ratio": "(sum|lambda|)^2 / sum lambda^2 over eigenvalues of the symmetrised map (A + A^T)/2.",
    "frames/stable_rank": "sum sigma^2 / sigma_1^2 over the singular values of the window-averaged map.",
    "frames/top_column_mass": "Share of the total attention received by the top 10 % of keys.",
    "frames/row_entropy": "Mean entropy (nats) of the attention rows t >= 1.",
    "frames/row_entropy_norm": "Mean over rows t >= 1 of entropy / log(number of visible keys: t + 1 in a causal map, T in an encoder's): 1 = uniform.",
    "frames/class": "Frame class code, 0 none, 1 centralized, 2 distributed, 3 bidirectional (rule in frames.py); model row: majority over layers.",
    # active / dormant heads (Guo et al. 2024); BOS = position 0
    "dormancy/bos_attn_trigger": "Attention on BOS averaged over trigger query positions t >= 1 (all windows).",
    "dormancy/bos_attn_nontrigger": "Attention on BOS averaged over non-trigger query positions t >= 1 (all windows).",
    "dormancy/dormant_frac": "Share of query positions t >= 1 where the head is labelled dormant (attention on BOS >= 0.5).",
    "dormancy/dormant_frac_trigger": "Share of trigger query positions t >= 1 where the head is labelled dormant.",
    "dormancy/dormant_frac_nontrigger": "Share of non-trigger query positions t >= 1 where the head is labelled dormant.",
    "dormancy/value_drain": "Value-state drain |v_BOS| / mean_{t>=1} |v_t| (windows pooled) per value head.",
    "dormancy/resid_peak": "Residual-state peak |h_BOS| / mean_{t>=1} |h_t| (windows pooled) after the block (layer rows).",
    "dormancy/bos_resid_norm": "Absolute residual norm |h_BOS| after the block, averaged over windows: the quantity Guo et al. report (layer rows).",
    "dormancy/base_loss": "Mean next-token loss of the unmodified model on the probe batch (model row; causal models only, not emitted for encoders).",
    "dormancy/delta_loss_dormant": "Loss change when the head's output is zeroed at the positions where it is labelled dormant (head rows only; causal models only).",
    "dormancy/delta_loss_active": "Loss change when the head's output is zeroed at the positions where it is labelled active (head rows only; causal models only).",
    "dormancy/zeroed_frac_dormant": "Share of all positions (t >= 0) zeroed in the dormant run (head rows only).",
    # streaming evaluation with a bounded KV cache of C tokens on a T-token stream (metrics.md
    # section 6, analysis/streaming.py); model rows only; causal models only (an encoder has no
    # KV cache: model/streaming.py refuses it). NLL is indexed by the query position t
    # (predicting token t+1); {k} is a sink count, {i} the first position of a bucket.
    "stream/stream_len": "T, the number of tokens of the evaluation stream (model row).",
    "stream/cache_len": "C, the KV cache size in tokens, the current one included; extra slots are kept on top (model row).",
    "stream/bucket_len": "Number of query positions averaged in each stream/nll/.../at_{i} row (model row).",
    "stream/ppl/dense": "Perplexity over query positions t >= C (after the first eviction) under dense (plain causal attention over the whole stream).",
    "stream/ppl/recompute": "Perplexity over query positions t >= C under recompute (each query re-encoded from its own last C tokens: the oracle), on the positions its stride ran.",
    "stream/ppl/window": "Perplexity over query positions t >= C (after the first eviction) under window (the last C tokens, stream positions).",
    "stream/ppl/window_shift": "Perplexity over query positions t >= C (after the first eviction) under window_shift (the last C tokens, positions re-indexed in the cache).",
    "stream/ppl/sinks{k}": "Perplexity over query positions t >= C (after the first eviction) under sinks{k} (the first k tokens plus the last C-k, stream positions).",
    "stream/ppl/sinks{k}_shift": "Perplexity over query positions t >= C (after the first eviction) under sinks{k}_shift (the first k tokens plus the last C-k, positions re-indexed in the cache).",
    "stream/ppl_all/dense": "Perplexity over all query positions t = 0..T-2 under dense.",
    "stream/ppl_all/recompute": "Perplexity over all query positions t = 0..T-2 under recompute, on the positions its stride ran.",
    "stream/ppl_all/window": "Perplexity over all query positions t = 0..T-2 under window.",
    "stream/ppl_all/window_shift": "Perplexity over all query positions t = 0..T-2 under window_shift.",
    "stream/ppl_all/sinks{k}": "Perplexity over all query positions t = 0..T-2 under sinks{k}.",
    "stream/ppl_all/sinks{k}_shift": "Perplexity over all query positions t = 0..T-2 under sinks{k}_shift.",
    "stream/ratio/dense": "PPL(dense) / PPL(recompute) on t >= C: what length extrapolation costs. Only positions where the oracle ran (its stride) count, in both terms.",
    "stream/ratio/window": "R_win without shift: PPL(window) / PPL(recompute) on t >= C (the window collapse). Only positions where the oracle ran (its stride) count, in both terms.",
    "stream/ratio/window_shift": "R_win with shift: PPL(window_shift) / PPL(recompute) on t >= C. Only positions where the oracle ran (its stride) count, in both terms.",
    "stream/ratio/sinks{k}": "R_k without shift, the sink sufficiency: PPL(sinks{k}) / PPL(recompute) on t >= C. Only positions where the oracle ran (its stride) count, in both terms.",
    "stream/ratio/sinks{k}_shift": "R_k with shift: PPL(sinks{k}_shift) / PPL(recompute) on t >= C. Only positions where the oracle ran (its stride) count, in both terms.",
    "stream/nll/dense/at_{i}": "Mean NLL under dense over query positions i .. i+bucket_len-1 (the PPL-vs-position curve).",
    "stream/nll/recompute/at_{i}": "Mean NLL under recompute over query positions i .. i+bucket_len-1 (the PPL-vs-position curve).",
    "stream/nll/window/at_{i}": "Mean NLL under window over query positions i .. i+bucket_len-1 (the PPL-vs-position curve).",
    "stream/nll/window_shift/at_{i}": "Mean NLL under window_shift over query positions i .. i+bucket_len-1 (the PPL-vs-position curve).",
    "stream/nll/sinks{k}/at_{i}": "Mean NLL under sinks{k} over query positions i .. i+bucket_len-1 (the PPL-vs-position curve).",
    "stream/nll/sinks{k}_shift/at_{i}": "Mean NLL under sinks{k}_shift over query positions i .. i+bucket_len-1 (the PPL-vs-position curve).",
    # activation outliers at the linear-layer inputs (analysis/outliers.py), layer rows. {site}:
    # qkv_in (input of wq/wk/wv), o_in (of wo), gate_up_in (of w_gate/w_up), down_in (of
    # w_down), resid_post (the block output). m_t = max over channels of |x[t]|.
    "outliers/{site}/max_abs": "Largest |x| at the site over the probe batch (layer rows); model row: the largest over layers.",
    "outliers/{site}/kurtosis_mean": "Bondarenko et al.'s kurtosis mu4 / sigma^4 of one window's flattened [T, d] tensor, averaged over windows.",
    "outliers/{site}/kurtosis_max": "The largest per-window kurtosis mu4 / sigma^4 over the probe batch.",
    "outliers/{site}/token_max_over_median": "PrefixQuant's token-wise top-1 / median: max_t m_t / median_t m_t per window, averaged over windows.",
    "outliers/{site}/n_outlier_tokens": "Mean number of outlier tokens per window: m_t > eta (64) x the window's median m_t (PrefixQuant).",
    "outliers/{site}/position/rank_{i}": "The i-th most frequent position of an outlier token (rows only for positions that hold one).",
    "outliers/{site}/position_share/rank_{i}": "Share of windows with an outlier token at that position.",
    "outliers/{site}/token/rank_{i}": "The i-th most frequent token id among outlier tokens (needs the probe's input ids).",
    "outliers/{site}/token_share/rank_{i}": "Share of the site's outlier tokens that carry that token id.",
    # fake-quantised W/A evaluation (analysis/quant.py, analysis/prefix.py), model rows. {mode}:
    # per_tensor_static, per_tensor_dynamic, per_token_dynamic; {prefix}: bos, prefixquant,
    # cushioncache. Perplexities score tokens 1..T-1 of each evaluation window.
    "quant/bits": "Bits of the fake-quantised weights and activations (8: W8A8).",
    "quant/ppl/fp": "Full-precision perplexity on the evaluation windows.",
    "quant/ppl/{mode}": "Perplexity with int weights (symmetric, per output channel) and activations quantised in {mode} at every linear input but the LM head.",
    "quant/ppl_increase/{mode}": "quant/ppl/{mode} minus quant/ppl/fp.",
    "quant/max_act": "Largest |x| at any quantised linear's input on the evaluation windows (full precision).",
    "quant/token_max_over_median": "Largest over the quantised linears of the window-mean token-wise top-1 / median (full precision).",
    "quant/prefix/{prefix}/len": "Number of prefix tokens (BOS included) kept in full precision before every window.",
    "quant/prefix/{prefix}/token_{i}": "Token id at position i of the prefix.",
    "quant/prefix/{prefix}/ppl/fp": "The control: full-precision perplexity with the prefix, on the same predictions as quant/ppl/fp.",
    "quant/prefix/{prefix}/ppl_fp_change": "quant/prefix/{prefix}/ppl/fp minus quant/ppl/fp: what the prefix alone changes, quantisation aside.",
    "quant/prefix/{prefix}/ppl/{mode}": "Perplexity with the prefix in full precision and the tokens that follow fake-quantised in {mode}.",
    "quant/prefix/{prefix}/ppl_increase/{mode}": "quant/prefix/{prefix}/ppl/{mode} minus the FP + prefix control quant/prefix/{prefix}/ppl/fp.",
    "quant/prefix/{prefix}/max_act": "Largest |x| at any quantised linear's input over the tokens after the prefix (full precision).",
    "quant/prefix/{prefix}/token_max_over_median": "quant/token_max_over_median over the tokens after the prefix.",
    # interventions at inference (analysis/interventions.py), through the editing recorder;
    # causal models only. Perplexity: exp of the mean next-token NLL over every position of
    # every probe window; head = -1 on every row.
    "intervention/none/ppl": "Perplexity of the unedited model on the probe set, from the probe's own logits (model row).",
    "intervention/massive/n_entries": "Number of massive entries (Sun et al.'s rule, as massive/sun_count) edited over the probe set, at the layer where they appear (layer -1 and 0 when there are none).",
    "intervention/massive_zero/ppl": "Perplexity with the massive activations set to zero in the residual stream after the block where they appear (Sun et al. 2024); the unedited perplexity when there are none.",
    "intervention/massive_zero/ppl_ratio": "intervention/massive_zero/ppl / intervention/none/ppl (1 when there are no massive activations).",
    "intervention/massive_mean/ppl": "Perplexity with the massive activations set to their channel's mean massive value over the probe set, where they appear (Sun et al. 2024).",
    "intervention/massive_mean/ppl_ratio": "intervention/massive_mean/ppl / intervention/none/ppl (1 when there are no massive activations).",
    "intervention/no_sink/ppl": "Perplexity with no query attending to position 0 (rows renormalised; not normalised variants: the column zeroed) in layer l (layer rows) or in all layers at once (model row).",
    "intervention/no_sink/ppl_ratio": "intervention/no_sink/ppl / intervention/none/ppl, per layer and for all layers at once.",
}

_PLACEHOLDER = {
    "k": r"\d+",
    "i": r"\d+",
    "n": r"\d+",
    "slot": r"[^/]+",
    "site": r"(?:qkv_in|o_in|gate_up_in|down_in|resid_post)",
    "mode": r"(?:per_tensor_static|per_tensor_dynamic|per_token_dynamic)",
    "prefix": r"(?:bos|prefixquant|cushioncache)",
}


def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{([a-z]+)\}", template)
    # re.split alternates literal text and placeholder names
    body = "".join(re.escape(p) if j % 2 == 0 else _PLACEHOLDER[p] for j, p in enumerate(parts))
    return re.compile("^" + body + "$")


_PATTERNS = [(_compile(template), template) for template in METRICS]


def template_of(name: str) -> str | None:
    """The METRICS key that `name` instantiates, or None when it is not registered."""
    if name in METRICS:
        return name
    for pattern, template in _PATTERNS:
        if pattern.match(name):
            return template
    return None


def describe(name: str) -> str:
    """The one-sentence definition of an emitted metric name; KeyError when unregistered."""
    template = template_of(name)
    if template is None:
        raise KeyError(f"metric {name!r} is not in sinklab.analysis.METRICS")
    return METRICS[template]


def metrics_markdown() -> str:
    """The registry as a markdown table (metric column name, definition) for docs/metrics.md."""
    lines = ["| metric | definition |", "| --- | --- |"]
    pipe = "\\|"  # a literal | inside a table cell
    lines += [f"| `{name}` | {text.replace('|', pipe)} |" for name, text in METRICS.items()]
    return "\n".join(lines)
