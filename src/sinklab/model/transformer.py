"""The decoder (or, with `causal=False`, encoder): embeddings (+ optional sink-token
prefix), blocks, final norm, LM head.

`forward` is the training path (fused attention, nothing kept); `forward_probe` runs the same
modules with a recorder and returns the named tensors documented in `probe.py`;
`forward_stream` runs them on one long stream under a bounded-cache plan (`streaming.py`).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sinklab.model.attention import Attention
from sinklab.model.config import ModelConfig
from sinklab.model.layers import MLP, make_norm
from sinklab.model.position import Positions
from sinklab.model.probe import NameFilter, ProbeOutput, name_filter
from sinklab.model.recorder import NULL_RECORDER, Edits, Recorder
from sinklab.model.streaming import StreamPlan, require_causal


class Block(nn.Module):
    """Attention then MLP, each with a residual, its norms placed by `model.norm_position`:

        pre        x + f(norm(x))            (Llama)
        post       norm(x + f(x))            (the 2017 Transformer)
        sandwich   x + norm_out(f(norm(x)))  (Gemma 2/3)
        reordered  x + norm_out(f(x))        (OLMo 2)

    or, with `parallel_block`, x + attn(norm_attn(x)) + mlp(norm_mlp(x)) (GPT-NeoX, GPT-J).
    The hooks `norm_attn.input` / `norm_mlp.input` always hold the residual stream entering
    the sublayer (for post: the sum entering the norm).
    """

    def __init__(self, cfg: ModelConfig, layer: int = 0) -> None:
        super().__init__()
        self.norm_position = cfg.norm_position
        self.pre_norm = cfg.norm_position != "post"
        self.parallel = cfg.parallel_block
        self.sliding = cfg.is_sliding(layer)  # attends through the sliding window
        self.has_mlp = cfg.mlp != "none"
        norms_in = cfg.norm_position != "reordered"
        norms_out = cfg.norm_position in ("sandwich", "reordered")
        if norms_in:
            self.norm_attn = make_norm(cfg)
        if norms_out:
            self.norm_attn_out = make_norm(cfg)
        self.attn = Attention(cfg)
        if self.has_mlp:
            if norms_in:
                self.norm_mlp = make_norm(cfg)
            if norms_out:
                self.norm_mlp_out = make_norm(cfg)
            self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def attn_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the attention projections read, given the residual stream `x` entering the
        sublayer (not for post-norm, whose attention reads the stream itself)."""
        return self.norm_attn(x) if hasattr(self, "norm_attn") else x

    def mlp_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the MLP reads, given the residual stream `x` entering it (not for post-norm)."""
        return self.norm_mlp(x) if hasattr(self, "norm_mlp") else x

    def forward(
        self,
        x: torch.Tensor,
        pos: Positions,
        rec: Recorder = NULL_RECORDER,
    ) -> torch.Tensor:
        attn_rec, mlp_rec = rec.child("attn"), rec.child("mlp")
        if not self.pre_norm:
            x = x + self.drop(self.attn(x, pos, attn_rec))
            x = rec.hook("norm_attn.input", x, pos_dim=1)
            x = self.norm_attn(x)
            if self.has_mlp:
                x = x + self.drop(self.mlp(x, mlp_rec))
                x = rec.hook("norm_mlp.input", x, pos_dim=1)
                x = self.norm_mlp(x)
        elif self.parallel:  # both sublayers read the block's input; the residual adds both
            x = rec.hook("norm_attn.input", x, pos_dim=1)
            for_mlp = rec.hook("norm_mlp.input", x, pos_dim=1)
            attn = self.attn(self.attn_input(x), pos, attn_rec)
            x = x + self.drop(attn) + self.drop(self.mlp(self.mlp_input(for_mlp), mlp_rec))
        else:
            x = rec.hook("norm_attn.input", x, pos_dim=1)
            out = self.attn(self.attn_input(x), pos, attn_rec)
            if hasattr(self, "norm_attn_out"):
                out = self.norm_attn_out(out)
            x = x + self.drop(out)
            if self.has_mlp:
                x = rec.hook("norm_mlp.input", x, pos_dim=1)
                out = self.mlp(self.mlp_input(x), mlp_rec)
                if hasattr(self, "norm_mlp_out"):
                    out = self.norm_mlp_out(out)
                x = x + self.drop(out)
        return rec.hook("resid_post", x, pos_dim=1)


class Transformer(nn.Module):
    """Llama-style decoder whose every architectural choice comes from a `ModelConfig`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        S = cfg.n_sink_tokens
        self.position = cfg.position  # the kind of `model.pos`: see position.py
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        table = self.position.table()
        if table is not None:  # learned: `pos_emb.weight` in state dicts
            self.pos_emb = table
        if S:
            self.sink_tokens = nn.Parameter(torch.zeros(S, cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.has_sliding = any(block.sliding for block in self.blocks)
        self.norm_final = make_norm(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        self.reset_parameters()

    @property
    def extra_slots(self) -> tuple[str, ...]:
        """Names of the leading columns of `attn.pattern`, in order."""
        attn = self.cfg.attention
        slots = ["sink_logit"] if attn in ("sink_logit", "softmax_off_by_one") else []
        if self.cfg.kv_bias:
            slots.append("kv_bias")
        slots += [f"sink_token_{i}" for i in range(self.cfg.n_sink_tokens)]
        return tuple(slots)

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """normal(0, init_std) for matrices, embeddings and extra slots; zeros for biases and
        sink logits; ones for norm gains. Residual output projections (attn.wo, mlp.w_down) get
        std / sqrt(2 * n_layers), as in GPT-2 and nanoGPT, so the residual stream's variance
        does not grow with depth."""
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "bias" or leaf == "sink_logit":
                nn.init.zeros_(p)
            elif "norm" in name:  # an effective gain of one, whatever the offset
                nn.init.constant_(p, 1.0 - self.cfg.norm_offset)
            elif name.endswith(("attn.wo.weight", "mlp.w_down.weight")):
                nn.init.normal_(p, 0.0, std / math.sqrt(2 * self.cfg.n_layers))
            else:
                nn.init.normal_(p, 0.0, std)

    # -- forward ---------------------------------------------------------------------------

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits [N, T, V]; the fast path used for training."""
        return self._run(input_ids, NULL_RECORDER)

    def forward_probe(
        self,
        input_ids: torch.Tensor,
        *,
        names: NameFilter = None,
        edits: Edits | None = None,
    ) -> ProbeOutput:
        """Logits plus the named tensors of `probe.py` that pass `names`, with `edits` (hook
        name -> edit, see `recorder.py` and `edits.py`) applied where those tensors flow.

        Attention is computed explicitly (matmul + softmax) in every layer whose pattern is
        asked for or edited; other layers use the fused kernel. Gradients follow the caller's
        grad mode. An edit whose name is no hook point of this model is refused (ValueError).
        """
        rec = Recorder(name_filter(names), n_prefix=self.cfg.n_sink_tokens, edits=edits)
        logits = self._run(input_ids, rec)
        missed = sorted(set(rec.edits) - rec.applied)
        if missed:
            raise ValueError(f"edits name no hook point of this model: {missed}")
        return ProbeOutput(
            logits=logits,
            cache=rec.cache,
            n_layers=self.cfg.n_layers,
            extra_slots=self.extra_slots,
            normalised=self.cfg.normalised_attention,
            causal=self.cfg.causal,
        )

    def _run(self, input_ids: torch.Tensor, rec: Recorder) -> torch.Tensor:
        cfg = self.cfg
        S, T = cfg.n_sink_tokens, input_ids.shape[1]
        self.position.check_window(T)
        full, sliding = self.layer_positions(S + T, input_ids.device)
        x = self._embed(input_ids, torch.arange(S + T, device=input_ids.device), S + T)
        x = rec.hook("embed", x, pos_dim=1)

        for i, block in enumerate(self.blocks):
            x = block(x, sliding if block.sliding else full, rec.child(f"blocks.{i}"))

        x = rec.hook("norm_final.input", x, pos_dim=1)[:, S:]
        return self.head(self.norm_final(x))

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from final-normed states: the LM head, soft-capped when
        `logit_softcap` is set (every caller that forms logits itself goes through here)."""
        logits = self.lm_head(x)
        cap = self.cfg.logit_softcap
        return logits if cap is None else torch.tanh(logits / cap) * cap

    def layer_positions(self, length: int, device: torch.device) -> tuple[Positions, Positions]:
        """(full layers', sliding layers') position information for one forward; the same
        object twice when no layer slides."""
        full = self.position.positions(length, device)
        if not self.has_sliding:
            return full, full
        return full, self.position.positions(length, device, sliding=True)

    def forward_stream(
        self, input_ids: torch.Tensor, plan: StreamPlan | None = None, *, hidden: bool = False
    ) -> torch.Tensor:
        """Logits [N, T, V] (or, with `hidden`, the final-normed states [N, T, d]) of a
        stream that may be longer than `max_seq_len`.

        `plan` None is plain causal attention over the whole stream (sinusoidal positions
        extrapolate; learned ones refuse positions past their table). A plan restricts each
        query's keys to a bounded cache and says at which positions they sit: see
        `sinklab.model.streaming`. Same modules as `forward`, so a plan-free call on a
        sequence that fits equals `forward`. Its memory grows with T (every token's states);
        `sinklab.model.rolling_cache.stream_chunks` gives the same states with O(C) memory.
        """
        require_causal(self.cfg)
        S, T = self.cfg.n_sink_tokens, input_ids.shape[1]
        full, sliding = self.layer_positions(S + T, input_ids.device)
        full.stream = sliding.stream = plan
        if plan is not None:
            position_ids, end = plan.position_ids(input_ids.device), plan.positions_end
        else:
            position_ids, end = torch.arange(S + T, device=input_ids.device), S + T
        x = self._embed(input_ids, position_ids, end)
        for block in self.blocks:
            x = block(x, sliding if block.sliding else full)
        x = self.norm_final(x[:, S:])
        return x if hidden else self.head(x)

    def _embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor, end: int) -> torch.Tensor:
        """The one embedding step of `forward` and `forward_stream`: token embeddings after the
        sink-token prefix, plus the absolute encoding (learned, sinusoidal) at `position_ids`
        [S + T] (prefix included; all below `end`, a host int), then dropout."""
        N = input_ids.shape[0]
        x = self.tok_emb(input_ids)
        if self.cfg.scale_embeddings:  # Gemma: sqrt(d_model), cast to the embedding dtype
            x = x * torch.tensor(self.cfg.d_model**0.5, dtype=x.dtype)
        if self.cfg.n_sink_tokens:
            x = torch.cat([self.sink_tokens[None].expand(N, -1, -1).to(x.dtype), x], dim=1)
        x = self.position.add(x, position_ids, end, getattr(self, "pos_emb", None))
        return self.drop(x)


def build_model(cfg: ModelConfig) -> Transformer:
    """The one constructor the trainer and the analysis code call."""
    return Transformer(cfg)
