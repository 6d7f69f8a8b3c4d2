"""`custom-transformer`'s layer: a readable copy of `torch.nn.TransformerEncoderLayer`.

Parameter names match torch's layer exactly (`self_attn.in_proj_weight`, `linear1`, `norm1`,
...), so weights move freely between the two architectures and a test holds them equal.
Edit `_sa_block` / `_ff_block` here; edit the attention math itself in
`torch_f_multi_head_attention_forward.py`.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.model_params import ModelParams
from model.transformer.torch_f_multi_head_attention_forward import multi_head_attention_forward

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu}


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

    def forward(self, x: Tensor, causal: bool = True, need_weights: bool = False, attn_requests: Any = None):
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

    def forward(self, x: Tensor, need_weights: bool = False, attn_requests: Any = None) -> tuple[Tensor, Tensor | None]:
        """x: (batch, seq, dim), causal. Returns the new residual stream and the attention weights if asked."""
        if self.norm_first:
            sa, weights = self._sa_block(self.norm1(x), need_weights, attn_requests)
            x = x + sa
            x = x + self._ff_block(self.norm2(x))
        else:
            sa, weights = self._sa_block(x, need_weights, attn_requests)
            x = self.norm1(x + sa)
            x = self.norm2(x + self._ff_block(x))
        return x, weights

    def _sa_block(self, x: Tensor, need_weights: bool, attn_requests: Any) -> tuple[Tensor, Tensor | None]:
        out, weights = self.self_attn(x, causal=True, need_weights=need_weights, attn_requests=attn_requests)
        return self.dropout_sa(out), weights

    def _ff_block(self, x: Tensor) -> Tensor:
        x = self.linear2(self.dropout(self.activation(self.linear1(x))))
        return self.dropout_ff(x)
