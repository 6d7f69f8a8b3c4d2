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

from model.hooks import NO_HOOK, Hook
from model.kv_cache import LayerKV
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
    hook: Hook = NO_HOOK,
    kv_cache: LayerKV | None = None,
    positions: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """x: (batch, seq, dim) → (output (batch, seq, dim), weights (batch, heads, seq, keys) or None).

    `hook(name, t)` is where `run_with_cache`/`run_with_hooks` read or replace activations
    (identity otherwise; names in docs/hooks.md). With a `kv_cache` (incremental decoding), x
    holds only the new tokens: their keys/values are appended and attention runs over all keys.
    `positions` (batch, seq) are x's absolute positions (they start after the cached tokens).
    """
    bsz, seq_len, dim = x.shape
    head_dim = dim // n_heads

    # project to queries, keys, values and split heads: (batch, seq, heads, head_dim)
    q, k, v = F.linear(x, in_proj_weight, in_proj_bias).chunk(3, dim=-1)
    q, k, v = (t.view(bsz, seq_len, n_heads, head_dim) for t in (q, k, v))
    q, k, v = hook("hook_q", q), hook("hook_k", k), hook("hook_v", v)
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (batch, heads, seq, head_dim)
    if getattr(model_params, "pos_encoding", None) == "rotary":  # RoPE: positions enter through q and k
        q, k = apply_rotary(q, positions), apply_rotary(k, positions)
    if kv_cache is not None:  # keys and values of the earlier tokens, then these
        k, v = kv_cache.append(k, v)
    past = k.shape[-2] - seq_len  # tokens before x (0 without a KV cache)
    dropout_p = dropout_p if training else 0.0
    need_weights = need_weights or hook.wants("hook_pattern") or hook.wants("hook_attn_scores")

    if model_params.attn_fast_path and not need_weights:
        if past == 0:
            attn_output = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal)
        else:
            allowed = ~future_mask(seq_len, past, x.device) if causal else None
            attn_output = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p)
        attn_output_weights = None
    else:
        # scores: (batch, heads, seq_q, seq_k)
        attn_output_weights = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(head_dim)
        if causal:
            attn_output_weights = attn_output_weights.masked_fill(future_mask(seq_len, past, x.device), float("-inf"))
        attn_output_weights = hook("hook_attn_scores", attn_output_weights)
        attn_output_weights = softmax(attn_output_weights, dim=-1)
        attn_output_weights = hook("hook_pattern", attn_output_weights)
        attn_probs = F.dropout(attn_output_weights, p=dropout_p) if dropout_p > 0 else attn_output_weights
        attn_output = torch.matmul(attn_probs, v)

    attn_output = hook("hook_z", attn_output.transpose(1, 2))  # (batch, seq, heads, head_dim)
    attn_output = attn_output.reshape(bsz, seq_len, dim)
    return F.linear(attn_output, out_proj_weight, out_proj_bias), attn_output_weights


def future_mask(n_queries: int, past: int, device: torch.device) -> Tensor:
    """(n_queries, past + n_queries) bool, True where query i (at position past + i) would see a later key."""
    return torch.ones(n_queries, past + n_queries, dtype=torch.bool, device=device).triu(past + 1)
