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
    """Attention then MLP, each with a residual; the norm before (pre) or after (post) the sum."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.pre_norm = cfg.norm_position == "pre"
        self.norm_attn = make_norm(cfg)
        self.attn = Attention(cfg)
        self.has_mlp = cfg.mlp != "none"
        if self.has_mlp:
            self.norm_mlp = make_norm(cfg)
            self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,
        pos: Positions,
        rec: Recorder = NULL_RECORDER,
    ) -> torch.Tensor:
        attn_rec, mlp_rec = rec.child("attn"), rec.child("mlp")
        if self.pre_norm:
            x = rec.hook("norm_attn.input", x, pos_dim=1)
            x = x + self.drop(self.attn(self.norm_attn(x), pos, attn_rec))
            if self.has_mlp:
                x = rec.hook("norm_mlp.input", x, pos_dim=1)
                x = x + self.drop(self.mlp(self.norm_mlp(x), mlp_rec))
        else:
            x = x + self.drop(self.attn(x, pos, attn_rec))
            x = rec.hook("norm_attn.input", x, pos_dim=1)
            x = self.norm_attn(x)
            if self.has_mlp:
                x = x + self.drop(self.mlp(x, mlp_rec))
                x = rec.hook("norm_mlp.input", x, pos_dim=1)
                x = self.norm_mlp(x)
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
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
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
            elif "norm" in name:
                nn.init.ones_(p)
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
        pos = self.position.positions(S + T, input_ids.device)
        x = self._embed(input_ids, torch.arange(S + T, device=input_ids.device), S + T)
        x = rec.hook("embed", x, pos_dim=1)

        for i, block in enumerate(self.blocks):
            x = block(x, pos, rec.child(f"blocks.{i}"))

        x = rec.hook("norm_final.input", x, pos_dim=1)[:, S:]
        return self.lm_head(self.norm_final(x))

    def forward_stream(
        self, input_ids: torch.Tensor, plan: StreamPlan | None = None, *, hidden: bool = False
    ) -> torch.Tensor:
        """Logits [N, T, V] (or, with `hidden`, the final-normed states [N, T, d]) of a
        stream that may be longer than `max_seq_len`.

        `plan` None is plain causal attention over the whole stream (sinusoidal positions
        extrapolate; learned ones refuse positions past their table). A plan restricts each
        query's keys to a bounded cache and says at which positions they sit: see
        `sinklab.model.streaming`. Same modules as `forward`, so a plan-free call on a
        sequence that fits equals `forward`.
        """
        require_causal(self.cfg)
        S, T = self.cfg.n_sink_tokens, input_ids.shape[1]
        pos = self.position.positions(S + T, input_ids.device)
        pos.stream = plan
        if plan is not None:
            position_ids, end = plan.position_ids(input_ids.device), plan.positions_end
        else:
            position_ids, end = torch.arange(S + T, device=input_ids.device), S + T
        x = self._embed(input_ids, position_ids, end)
        for block in self.blocks:
            x = block(x, pos)
        x = self.norm_final(x[:, S:])
        return x if hidden else self.lm_head(x)

    def _embed(self, input_ids: torch.Tensor, position_ids: torch.Tensor, end: int) -> torch.Tensor:
        """The one embedding step of `forward` and `forward_stream`: token embeddings after the
        sink-token prefix, plus the absolute encoding (learned, sinusoidal) at `position_ids`
        [S + T] (prefix included; all below `end`, a host int), then dropout."""
        N = input_ids.shape[0]
        x = self.tok_emb(input_ids)
        if self.cfg.n_sink_tokens:
            x = torch.cat([self.sink_tokens[None].expand(N, -1, -1).to(x.dtype), x], dim=1)
        x = self.position.add(x, position_ids, end, getattr(self, "pos_emb", None))
        return self.drop(x)


def build_model(cfg: ModelConfig) -> Transformer:
    """The one constructor the trainer and the analysis code call."""
    return Transformer(cfg)
