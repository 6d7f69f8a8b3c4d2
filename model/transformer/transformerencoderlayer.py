"""`custom-transformer`'s layer: a readable copy of `torch.nn.TransformerEncoderLayer`.

Parameter names match torch's layer exactly (`self_attn.in_proj_weight`, `linear1`, `norm1`,
...), so weights move freely between the two architectures and a test holds them equal.
Edit `_sa_block` / `_ff_block` here; edit the attention math itself in
`torch_f_multi_head_attention_forward.py`.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.hooks import NO_HOOK, Hook
from model.kv_cache import LayerKV
from model.model_params import ModelParams
from model.transformer.torch_f_multi_head_attention_forward import multi_head_attention_forward

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "gelu_tanh": partial(F.gelu, approximate="tanh")}


class MultiheadSelfAttention(nn.Module):
    """Holds the attention weights under torch's names and calls our attention function."""

    def __init__(self, mp: ModelParams):
        super().__init__()
        self.model_params = mp
        self.n_heads = mp.n_heads
        self.dropout = mp.dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * mp.dim, mp.dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * mp.dim))
        self.out_proj = nn.Linear(mp.dim, mp.dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(
        self, x: Tensor, causal: bool = True, need_weights: bool = False, attn_requests: Any = None,
        hook: Hook = NO_HOOK, kv_cache: LayerKV | None = None, positions: Tensor | None = None,
    ):
        return multi_head_attention_forward(
            x,
            self.in_proj_weight,
            self.in_proj_bias,
            self.out_proj.weight,
            self.out_proj.bias,
            self.n_heads,
            causal=causal,
            dropout_p=self.dropout,
            training=self.training,
            need_weights=need_weights,
            model_params=self.model_params,
            attn_requests=attn_requests,
            hook=hook,
            kv_cache=kv_cache,
            positions=positions,
        )


class TransformerEncoderLayer(nn.Module):
    def __init__(self, mp: ModelParams):
        super().__init__()
        self.model_params = mp
        self.self_attn = MultiheadSelfAttention(mp)
        self.linear1 = nn.Linear(mp.dim, mp.dim_ff_factor * mp.dim)
        self.dropout = nn.Dropout(mp.dropout)
        self.linear2 = nn.Linear(mp.dim_ff_factor * mp.dim, mp.dim)
        self.norm_first = mp.norm_first
        self.norm1 = nn.LayerNorm(mp.dim, eps=mp.layer_norm_eps)
        self.norm2 = nn.LayerNorm(mp.dim, eps=mp.layer_norm_eps)
        self.dropout_sa = nn.Dropout(mp.dropout)
        self.dropout_ff = nn.Dropout(mp.dropout)
        self.activation = ACTIVATIONS[mp.activation]

    def forward(
        self, x: Tensor, need_weights: bool = False, attn_requests: Any = None,
        hook: Hook = NO_HOOK, kv_cache: LayerKV | None = None, positions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """x: (batch, seq, dim), causal. Returns the new residual stream and the attention weights if asked.

        `hook(name, t)` names activations for run_with_cache/run_with_hooks (docs/hooks.md);
        `kv_cache` and `positions` serve incremental decoding (see the attention function).
        """
        if self.norm_first:
            sa, weights = self._sa_block(self.norm1(x), need_weights, attn_requests, hook, kv_cache, positions)
            x = hook("hook_resid_mid", x + hook("hook_attn_out", sa))
            x = x + hook("hook_mlp_out", self._ff_block(self.norm2(x), hook))
        else:
            sa, weights = self._sa_block(x, need_weights, attn_requests, hook, kv_cache, positions)
            x = hook("hook_resid_mid", self.norm1(x + hook("hook_attn_out", sa)))
            x = self.norm2(x + hook("hook_mlp_out", self._ff_block(x, hook)))
        return x, weights

    def _sa_block(
        self, x: Tensor, need_weights: bool, attn_requests: Any,
        hook: Hook = NO_HOOK, kv_cache: LayerKV | None = None, positions: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        out, weights = self.self_attn(
            x, causal=True, need_weights=need_weights, attn_requests=attn_requests,
            hook=hook.scoped("attn."), kv_cache=kv_cache, positions=positions,
        )
        return self.dropout_sa(out), weights

    def _ff_block(self, x: Tensor, hook: Hook = NO_HOOK) -> Tensor:
        x = hook("mlp.hook_pre", self.linear1(x))
        x = hook("mlp.hook_post", self.activation(x))
        x = self.linear2(self.dropout(x))
        return self.dropout_ff(x)
