"""Attention: THE place to edit it. Every block that uses our attention (`custom-transformer`,
`llama`, GPT-2 from `gpt2.py`) runs the code in this file.

The math is split into small pieces, each a plain function you can edit (or monkeypatch):

    attention_scores(q, k, ...)      q·kᵀ / sqrt(head_dim)                → hook_attn_scores (after the mask)
    mask_scores(scores, past, ...)   -inf where a query would see a later key
    attention_pattern(scores, ...)   softmax over keys                    → hook_pattern
    mix_values(pattern, v, ...)      pattern · v                          → hook_z

Each piece receives the run's `model_params` (your config switches) and `attn_requests`
(anything `LM.forward` passes per call), so "scale the scores by a constant" is one line in
`attention_pattern`, before its softmax.

Speed without a second switch: while these pieces are exactly as shipped, attention runs as one
fused `F.scaled_dot_product_attention` call, which computes the same function. "As shipped" is
checked, not assumed: the source of the pieces must hash to `UNEDITED_FINGERPRINT` (recorded
below, next to them) and each piece must still be the function defined here (no monkeypatch).
`explicit_attention` (the pieces in order) and `future_mask` are watched the same way, and so is
every module-level name the pieces use (`softmax`, ...) against monkeypatching. Not detected:
rebinding such a name in this file itself (edit the piece instead). Edit a piece, patch one, or
ask for the scores or pattern through a hook, and the explicit path runs everywhere (training, `lm(x)`, perplexities, sampling with or without the KV cache, plots).
Every run prints which path it takes (`attention_path()`).
"""
from __future__ import annotations

import hashlib
import inspect
import io
import math
import tokenize
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.functional import softmax

from core.errors import UserError
from model.hooks import NO_HOOK, Hook
from model.kv_cache import LayerKV
from model.registry import attention


# --- the editable pieces ----------------------------------------------------------------------
def attention_scores(q: Tensor, k: Tensor, model_params: Any, attn_requests: Any = None) -> Tensor:
    """q (batch, heads, queries, head_dim), k (batch, heads, keys, head_dim) → scores (batch, heads, queries, keys)."""
    return torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(q.shape[-1])


def mask_scores(scores: Tensor, past: int, model_params: Any, attn_requests: Any = None) -> Tensor:
    """Causal mask: query i (at position past + i) sees keys 0..past + i."""
    return scores.masked_fill(future_mask(scores.shape[-2], past, scores.device), float("-inf"))


def attention_pattern(attn_output_weights: Tensor, model_params: Any, attn_requests: Any = None) -> Tensor:
    """Masked scores → attention weights (rows sum to 1)."""
    attn_output_weights = softmax(attn_output_weights, dim=-1)
    return attn_output_weights


def mix_values(pattern: Tensor, v: Tensor, model_params: Any, attn_requests: Any = None) -> Tensor:
    """pattern (batch, heads, queries, keys), v (batch, heads, keys, head_dim) → z (batch, heads, queries, head_dim)."""
    return torch.matmul(pattern, v)


EDITABLE = ("attention_scores", "mask_scores", "attention_pattern", "mix_values", "explicit_attention", "future_mask")
# Hash of each piece's code as shipped (comments and layout ignored). Update a hash only together
# with a change to its piece that keeps the pieces computing exactly what
# F.scaled_dot_product_attention computes (tests/test_attention_edits.py holds the two paths equal).
UNEDITED_FINGERPRINT = {
    "attention_scores": "237079b72bfa46cd",
    "mask_scores": "301d54536072168a",
    "attention_pattern": "7c9550a44ea5b0ad",
    "mix_values": "2046f67bc1d9732a",
    "explicit_attention": "e936aeec05f33f29",
    "future_mask": "c672f629450ca9e1",
}


# --- which path runs ----------------------------------------------------------------------------
def fingerprint(fn: Any) -> str:
    """Hash of a function's source tokens (comments and layout ignored): the same on every Python version."""
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        return "source-unavailable"
    skip = (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT)
    tokens = tokenize.generate_tokens(io.StringIO(inspect.cleandoc(src) if src[:1].isspace() else src).readline)
    return hashlib.sha256(" ".join(t.string for t in tokens if t.type not in skip).encode()).hexdigest()[:16]


def edited_pieces() -> list[str]:
    """Names of the pieces (or of the globals they use, e.g. `softmax`) that differ from the
    shipped ones: edited in this file or monkeypatched. Checked on every attention call."""
    g = globals()
    return [n for n in _WATCHED if n in _EDITED_IN_FILE or g.get(n) is not _SHIPPED[n]]


def attention_path() -> str:
    """The one line every run prints: which attention computation runs, and why."""
    edited = edited_pieces()
    return f"attention: explicit (edited: {', '.join(edited)})" if edited else "attention: fused SDPA (unedited)"


# --- the attention computation ------------------------------------------------------------------
def attend(q: Tensor, k: Tensor, v: Tensor, past: int, causal: bool, dropout_p: float, model_params: Any,
           attn_requests: Any = None, hook: Hook = NO_HOOK) -> Tensor:
    """q (b, heads, s, e), k and v (b, kv_heads, keys, e) → z (b, heads, s, e).

    Fused when that is provably the same function (pieces unedited, nobody hooks the scores or
    the pattern); otherwise the pieces above, one after another, with their hook points.
    """
    if hook.wants("hook_attn_scores") or hook.wants("hook_pattern") or edited_pieces():
        return explicit_attention(q, k, v, past, causal, dropout_p, model_params, attn_requests, hook)
    gqa = k.shape[1] != q.shape[1]
    if past == 0 or not causal:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=causal, enable_gqa=gqa)
    allowed = ~future_mask(q.shape[-2], past, q.device)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout_p, enable_gqa=gqa)


def explicit_attention(q: Tensor, k: Tensor, v: Tensor, past: int, causal: bool, dropout_p: float, model_params: Any,
                       attn_requests: Any = None, hook: Hook = NO_HOOK) -> Tensor:
    """The pieces in order, with the scores and pattern hook points between them."""
    if k.shape[1] != q.shape[1]:  # grouped-query attention: each key/value head serves a group of query heads
        group = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
    scores = attention_scores(q, k, model_params, attn_requests)
    if causal:
        scores = mask_scores(scores, past, model_params, attn_requests)
    scores = hook("hook_attn_scores", scores)
    pattern = hook("hook_pattern", attention_pattern(scores, model_params, attn_requests))
    if dropout_p > 0:
        pattern = F.dropout(pattern, p=dropout_p)
    return mix_values(pattern, v, model_params, attn_requests)


def future_mask(n_queries: int, past: int, device: torch.device) -> Tensor:
    """(n_queries, past + n_queries) bool, True where query i (at position past + i) would see a later key."""
    return torch.ones(n_queries, past + n_queries, dtype=torch.bool, device=device).triu(past + 1)


# --- the registered component: weights, projections, positions, KV cache -----------------------
@attention("mha")
class MultiheadSelfAttention(nn.Module):
    """Causal multi-head self-attention with grouped-query heads (n_kv_heads), optional biases and rotary q/k.

    Weights (torch's names, so torch's layer and old runs load): `in_proj_weight` packs the
    query, key and value projections as rows [q (n_heads·e); k (n_kv_heads·e); v (n_kv_heads·e)]
    — one fused matmul — and `out_proj` maps the heads back to the residual stream.
    """

    def __init__(self, mp: Any, bias: bool = True, rotary: nn.Module | None = None):
        super().__init__()
        self.model_params = mp
        self.n_heads = mp.n_heads
        self.n_kv_heads = mp.n_kv_heads or mp.n_heads
        if self.n_heads % self.n_kv_heads:
            raise UserError(f"n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads} (each key/value head serves a group of query heads)")
        self.head_dim = mp.dim // mp.n_heads
        self.dropout = mp.dropout
        self.split = (self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim, self.n_kv_heads * self.head_dim)
        self.in_proj_weight = nn.Parameter(torch.empty(sum(self.split), mp.dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(sum(self.split))) if bias else None
        self.out_proj = nn.Linear(self.n_heads * self.head_dim, mp.dim, bias=bias)
        self.out_proj.residual_out = True  # init tag: writes into the residual stream (scaled init)
        self.rotary = rotary
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: Tensor, attn_requests: Any = None, hook: Hook = NO_HOOK, kv_cache: LayerKV | None = None,
                positions: Tensor | None = None, causal: bool = True) -> Tensor:
        """x: (batch, seq, dim) → (batch, seq, dim). With a `kv_cache`, x holds only the new tokens
        (their keys/values are appended); `positions` (batch, seq) are their absolute positions."""
        bsz, seq_len, _ = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).split(self.split, dim=-1)
        q = hook("hook_q", q.view(bsz, seq_len, self.n_heads, self.head_dim)).transpose(1, 2)  # (b, heads, s, e)
        k = hook("hook_k", k.view(bsz, seq_len, self.n_kv_heads, self.head_dim)).transpose(1, 2)
        v = hook("hook_v", v.view(bsz, seq_len, self.n_kv_heads, self.head_dim)).transpose(1, 2)
        if self.rotary is not None:  # positions enter through q and k
            q, k = self.rotary(q, k, positions)
        if kv_cache is not None:  # keys and values of the earlier tokens, then these
            k, v = kv_cache.append(k, v)
        past = k.shape[-2] - seq_len
        z = attend(q, k, v, past, causal, self.dropout if self.training else 0.0, self.model_params, attn_requests, hook)
        z = hook("hook_z", z.transpose(1, 2))  # (batch, seq, heads, head_dim)
        return self.out_proj(z.reshape(bsz, seq_len, self.n_heads * self.head_dim))


# Snapshot of the shipped pieces and of every module-level name they use, taken when this file
# is imported: a monkeypatch of any of them afterwards is noticed by identity.
_SHIPPED = {name: globals()[name] for name in EDITABLE}
_SHIPPED.update({name: globals()[name] for fn in list(_SHIPPED.values()) for name in fn.__code__.co_names if name in globals() and name not in _SHIPPED})
_WATCHED = tuple(_SHIPPED)
_EDITED_IN_FILE = [n for n in EDITABLE if fingerprint(_SHIPPED[n]) != UNEDITED_FINGERPRINT[n]]
