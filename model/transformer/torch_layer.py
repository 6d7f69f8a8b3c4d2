"""`torch-transformer`: torch's own `nn.TransformerEncoderLayer`, the seed's reference layer.

Plain training runs torch's forward unchanged. With hooks or a KV cache the layer is recomputed
from its own weights (`torch_layer_forward`, held equal to torch's forward by a test), so it
has every hook name and samples incrementally like the other blocks. Deliberately independent
of our editable attention: edits to `torch_f_multi_head_attention_forward.py` never reach it.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.errors import UserError
from model.hooks import NO_HOOK, Hook
from model.kv_cache import LayerKV
from model.model_params import ModelParams
from model.registry import block, get
from model.transformer.block import Block, BlockContext
from model.transformer.components import ACTIVATIONS
from model.transformer.torch_f_multi_head_attention_forward import future_mask

OURS_TO_TORCH = {"mlp.linear1.": "linear1.", "mlp.linear2.": "linear2."}  # custom-transformer names -> torch's


@block("torch-transformer")
class TorchTransformerLayer(nn.TransformerEncoderLayer, Block):
    """torch's nn.TransformerEncoderLayer (the reference; LayerNorm, MHA, biases; edits to our attention do not apply)."""

    def __init__(self, mp: ModelParams):
        refuse_unsupported(mp)
        super().__init__(
            d_model=mp.dim, nhead=mp.n_heads, dim_feedforward=mp.dim_ff_factor * mp.dim, dropout=mp.dropout,
            activation=mp.activation if mp.activation in ("relu", "gelu") else ACTIVATIONS[mp.activation],
            layer_norm_eps=mp.layer_norm_eps, batch_first=True, norm_first=mp.norm_first,
        )
        self.max_seq_len = mp.max_seq_len
        self.self_attn.out_proj.residual_out = True
        self.linear2.residual_out = True
        self._causal_mask: Tensor | None = None
        self._register_load_state_dict_pre_hook(_rename_ours, with_module=True)

    def causal_mask(self, seq_len: int, device: torch.device) -> Tensor:
        """Float -inf mask above the diagonal, built once and sliced (torch's layer needs it)."""
        m = self._causal_mask
        if m is None or m.shape[0] < seq_len or m.device != device:
            n = max(seq_len, self.max_seq_len)
            m = self._causal_mask = torch.full((n, n), float("-inf"), device=device).triu(1)
        return m[:seq_len, :seq_len]

    def forward(self, x: Tensor, ctx: BlockContext | None = None, **kw: Any) -> Tensor:  # type: ignore[override]
        if ctx is None:  # called as torch's layer
            return super().forward(x, **kw)
        if ctx.hook or ctx.kv_cache is not None:  # look inside torch's layer: recompute it from its weights
            return torch_layer_forward(self, x, ctx.hook, ctx.kv_cache)
        return super().forward(x, src_mask=self.causal_mask(x.shape[1], x.device), is_causal=True)

    def attention_path(self) -> str:
        return "attention: torch nn.TransformerEncoderLayer (reference layer; edits to our attention do not apply)"


def refuse_unsupported(mp: ModelParams) -> None:
    if get("pos_encoding", mp.pos_encoding).qk_rotation(mp, mp.dim // mp.n_heads) is not None:
        raise UserError(f"pos_encoding={mp.pos_encoding!r} rotates queries and keys inside our attention; torch's layer has its own, "
                        f"so set layer_architecture='custom-transformer' (or 'llama') instead of 'torch-transformer'")
    chosen = {"attention": mp.attention, "mlp": mp.mlp, "norm": mp.norm, "n_kv_heads": mp.n_kv_heads if mp.n_kv_heads not in (None, mp.n_heads) else None,
              "bias": None if mp.bias in (None, True) else mp.bias, "parallel_residual": mp.parallel_residual or None}
    bad = [f"{k}={v!r}" for k, v in chosen.items() if v is not None]
    if bad:
        raise UserError(f"layer_architecture='torch-transformer' is torch's fixed layer and cannot take {', '.join(bad)}; "
                        f"use layer_architecture='custom-transformer' (same layer, editable)")


def _rename_ours(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rel = key[len(prefix):]
        for ours, torch_name in OURS_TO_TORCH.items():
            if rel.startswith(ours):
                state_dict[prefix + torch_name + rel[len(ours):]] = state_dict.pop(key)


def torch_layer_forward(layer: nn.TransformerEncoderLayer, x: Tensor, hook: Hook = NO_HOOK, kv: LayerKV | None = None) -> Tensor:
    """torch's `TransformerEncoderLayer.forward` (causal) restated with the layer's own weights,
    so hooks can see inside it and a KV cache can feed it. A test holds it equal to torch's."""
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
