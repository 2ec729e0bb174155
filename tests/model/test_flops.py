"""Parameter and FLOP counts against a case counted by hand."""

from __future__ import annotations

from sinklab.model import ModelConfig, build_model, flops_per_token, num_params

# vocab 10, d 8, 1 layer, 2 heads of 4, 1 kv head, SwiGLU d_ff 16, RMSNorm, learned positions (12).
#   tok_emb 10*8 = 80, pos_emb 12*8 = 96, lm_head 10*8 = 80 (untied), norm_final 8
#   block: norm_attn 8, wq 8*8 = 64, wk 8*4 = 32, wv 32, wo 64, norm_mlp 8,
#          w_gate 8*16 = 128, w_up 128, w_down 128  -> 592
HAND = dict(
    vocab_size=10,
    d_model=8,
    n_layers=1,
    n_heads=2,
    n_kv_heads=1,
    d_ff=16,
    pos="learned",
    max_seq_len=12,
)


def test_param_counts_untied() -> None:
    model = build_model(ModelConfig(**HAND, tie_embeddings=False))
    assert num_params(model) == 80 + 96 + 80 + 8 + 592
    assert num_params(model, exclude_embeddings=True) == 80 + 8 + 592  # lm_head stays


def test_param_counts_tied() -> None:
    model = build_model(ModelConfig(**HAND, tie_embeddings=True))
    assert num_params(model) == 80 + 96 + 8 + 592  # the shared matrix counts once
    assert num_params(model, exclude_embeddings=True) == 80 + 8 + 592


def test_flops_per_token_by_hand() -> None:
    cfg = ModelConfig(**HAND, tie_embeddings=False)
    # 6N + 12 * L * H * hd * T = 6*680 + 12*1*2*4*12
    assert flops_per_token(cfg, seq_len=12) == 6 * 680 + 12 * 1 * 2 * 4 * 12


def test_extra_slots_are_counted() -> None:
    base = num_params(build_model(ModelConfig(**HAND)), exclude_embeddings=True)
    cfg = ModelConfig(**HAND, attention="sink_logit", kv_bias=True, n_sink_tokens=3)
    model = build_model(cfg)
    # sink logit: 2 per layer; kv bias: 2 * (1 kv head * 4); sink tokens are a lookup table
    assert num_params(model, exclude_embeddings=True) == base + 2 + 8
    assert num_params(model) == num_params(build_model(ModelConfig(**HAND))) + 2 + 8 + 3 * 8 + 3 * 8
