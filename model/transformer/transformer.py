"""The stack of layers between the embeddings and the output head.

`layers` may hold torch's `nn.TransformerEncoderLayer`, our `TransformerEncoderLayer`, or any
other module mapping (batch, seq, dim) → (batch, seq, dim) (e.g. an injected `nn.ReLU()`).
Layer i is wrapped in the hook points `blocks.{i}.hook_resid_pre` / `hook_resid_post`, so the
activation cache (`LM.run_with_cache`, `get_embeddings=True`) covers injected layers too.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.hooks import NO_HOOK, Hook
from model.kv_cache import KVCache, LayerKV
from model.model_params import ModelParams
from model.transformer.torch_f_multi_head_attention_forward import future_mask
from model.transformer.transformerencoderlayer import ACTIVATIONS, TransformerEncoderLayer

ARCHITECTURES = ("torch-transformer", "custom-transformer")


def make_torch_layer(mp: ModelParams) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        d_model=mp.dim,
        nhead=mp.n_heads,
        dim_feedforward=mp.dim_ff_factor * mp.dim,
        dropout=mp.dropout,
        activation=mp.activation if mp.activation in ("relu", "gelu") else ACTIVATIONS[mp.activation],
        layer_norm_eps=mp.layer_norm_eps,
        batch_first=True,
        norm_first=mp.norm_first,
    )


class Transformer(nn.Module):
    def __init__(self, model_params: ModelParams):
        super().__init__()
        self.model_params = model_params
        if model_params.layer_architecture == "torch-transformer":
            make_layer = lambda: make_torch_layer(model_params)  # noqa: E731
        elif model_params.layer_architecture == "custom-transformer":
            make_layer = lambda: TransformerEncoderLayer(model_params)  # noqa: E731
        else:
            raise ValueError(f"unknown layer_architecture {model_params.layer_architecture!r}; use one of {ARCHITECTURES}")
        self.layers = nn.ModuleList([make_layer() for _ in range(self.model_params.n_layers)])
        self.norm = nn.LayerNorm(model_params.dim, eps=model_params.layer_norm_eps) if model_params.norm_first else nn.Identity()
        self._causal_mask: Tensor | None = None

    def causal_mask(self, seq_len: int, device: torch.device) -> Tensor:
        """Float -inf mask above the diagonal, built once and sliced (torch layers need it)."""
        m = self._causal_mask
        if m is None or m.shape[0] < seq_len or m.device != device:
            n = max(seq_len, self.model_params.max_seq_len)
            m = torch.full((n, n), float("-inf"), device=device).triu(1)
            self._causal_mask = m
        return m[:seq_len, :seq_len]

    def forward(
        self, x: Tensor, attn_requests: Any = None, hook: Hook = NO_HOOK, kv_cache: KVCache | None = None, positions: Tensor | None = None
    ) -> Tensor:
        """x: (batch, seq, dim) embedded input → the final (normed) residual stream, same shape.

        `hook` reads/replaces activations (model/hooks.py, names in docs/hooks.md); `kv_cache`
        holds earlier tokens' keys/values when x is only the newest tokens (incremental decoding).
        """
        for i, layer in enumerate(self.layers):
            h = hook.scoped(f"blocks.{i}.")
            x = h("hook_resid_pre", x)
            kv = kv_cache.layer(i) if kv_cache is not None else None
            if isinstance(layer, TransformerEncoderLayer):
                x, _ = layer(x, attn_requests=attn_requests, hook=h, kv_cache=kv, positions=positions)
            elif isinstance(layer, nn.TransformerEncoderLayer):
                if hook or kv is not None:  # look inside torch's layer: recompute it from its weights
                    x = torch_layer_forward(layer, x, h, kv)
                else:
                    x = layer(x, src_mask=self.causal_mask(x.shape[1], x.device), is_causal=True)
            else:
                x = layer(x)  # an injected module; with a KV cache it must act on each position alone
            x = h("hook_resid_post", x)
        return hook("ln_final.hook_normalized", self.norm(x))


def torch_layer_forward(layer: nn.TransformerEncoderLayer, x: Tensor, hook: Hook = NO_HOOK, kv: LayerKV | None = None) -> Tensor:
    """torch's `TransformerEncoderLayer.forward` (causal) restated with the layer's own weights,
    so hooks can see inside it and a KV cache can feed it. A test holds it equal to torch's.
    Deliberately independent of our editable attention function: torch-transformer stays torch.
    """
    if layer.norm_first:
        x = hook("hook_resid_mid", x + hook("hook_attn_out", _torch_sa_block(layer, layer.norm1(x), hook.scoped("attn."), kv)))
        x = x + hook("hook_mlp_out", _torch_ff_block(layer, layer.norm2(x), hook))
    else:
        x = hook("hook_resid_mid", layer.norm1(x + hook("hook_attn_out", _torch_sa_block(layer, x, hook.scoped("attn."), kv))))
        x = layer.norm2(x + hook("hook_mlp_out", _torch_ff_block(layer, x, hook)))
    return x


def _torch_sa_block(layer: nn.TransformerEncoderLayer, x: Tensor, hook: Hook, kv: LayerKV | None) -> Tensor:
    attn = layer.self_attn
    bsz, seq_len, dim = x.shape
    n_heads = attn.num_heads
    q, k, v = (t.view(bsz, seq_len, n_heads, dim // n_heads) for t in F.linear(x, attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1))
    q, k, v = (hook(f"hook_{n}", t).transpose(1, 2) for n, t in zip("qkv", (q, k, v)))
    if kv is not None:
        k, v = kv.append(k, v)
    past = k.shape[-2] - seq_len
    dropout_p = attn.dropout if layer.training else 0.0
    if hook.wants("hook_attn_scores") or hook.wants("hook_pattern"):
        scores = torch.matmul(q, k.transpose(-2, -1)) / math.sqrt(dim // n_heads)
        scores = hook("hook_attn_scores", scores.masked_fill(future_mask(seq_len, past, x.device), float("-inf")))
        pattern = hook("hook_pattern", scores.softmax(dim=-1))
        z = torch.matmul(F.dropout(pattern, p=dropout_p) if dropout_p > 0 else pattern, v)
    elif past == 0:
        z = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
    else:
        z = F.scaled_dot_product_attention(q, k, v, attn_mask=~future_mask(seq_len, past, x.device), dropout_p=dropout_p)
    z = hook("hook_z", z.transpose(1, 2)).reshape(bsz, seq_len, dim)
    return layer.dropout1(attn.out_proj(z))


def _torch_ff_block(layer: nn.TransformerEncoderLayer, x: Tensor, hook: Hook) -> Tensor:
    x = hook("mlp.hook_pre", layer.linear1(x))
    x = hook("mlp.hook_post", layer.activation(x))
    return layer.dropout2(layer.linear2(layer.dropout(x)))
