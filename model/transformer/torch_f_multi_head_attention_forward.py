"""The attention function of `custom-transformer`: THE place to edit attention.

It is a readable re-statement of torch's `F.multi_head_attention_forward` for causal
self-attention, batch-first. It receives the run's `model_params` (your config switches) and
`attn_requests` (anything `LM.forward` chooses to pass per call), so an idea such as
"scale the scores by a constant" is one line before the softmax below.

Speed: when nobody asks for the attention weights and `model_params.attn_fast_path` is True,
the explicit math is skipped for `F.scaled_dot_product_attention` (same result, fused kernel).
**Set `attn_fast_path=False` in your config once you edit the explicit path**, or your edit
only runs when weights are requested.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.functional import softmax

from model.positional import apply_rotary


def multi_head_attention_forward(
    x: Tensor,
    in_proj_weight: Tensor,
    in_proj_bias: Tensor | None,
    out_proj_weight: Tensor,
    out_proj_bias: Tensor | None,
    n_heads: int,
    causal: bool,
    dropout_p: float,
    training: bool,
    need_weights: bool,
    model_params: Any,
    attn_requests: Any = None,
) -> tuple[Tensor, Tensor | None]:
    """x: (batch, seq, dim) → (output (batch, seq, dim), weights (batch, heads, seq, seq) or None)."""
    bsz, seq_len, dim = x.shape
    head_dim = dim // n_heads

    # project to queries, keys, values and split heads: (batch, heads, seq, head_dim)
    q, k, v = F.linear(x, in_proj_weight, in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.view(bsz, seq_len, n_heads, head_dim).transpose(1, 2) for t in (q, k, v))
    if getattr(model_params, "pos_encoding", None) == "rotary":  # RoPE: positions enter through q and k
        q, k = apply_rotary(q), apply_rotary(k)
    dropout_p = dropout_p if training else 0.0

    if model_params.attn_fast_path and not need_weights:
        attn_output = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)
        attn_output_weights = None
    else:
        # scores: (batch, heads, seq_q, seq_k)
        attn_output_weights = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(head_dim)
        if causal:
            future = torch.ones(seq_len, seq_len, dtype=torch.bool, device=x.device).triu(1)
            attn_output_weights = attn_output_weights.masked_fill(future, float("-inf"))
        attn_output_weights = softmax(attn_output_weights, dim=-1)
        attn_probs = F.dropout(attn_output_weights, p=dropout_p) if dropout_p > 0 else attn_output_weights
        attn_output = torch.matmul(attn_probs, v)

    attn_output = attn_output.transpose(1, 2).reshape(bsz, seq_len, dim)
    return F.linear(attn_output, out_proj_weight, out_proj_bias), attn_output_weights
