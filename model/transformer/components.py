"""Registered norms and feed-forward (MLP) components. Attention lives in
`torch_f_multi_head_attention_forward.py`, blocks in their own files.

A component is an `nn.Module` built from `(mp, bias=...)`; an MLP's forward is `(x, hook)` and
calls `hook("mlp.hook_pre", ...)` / `hook("mlp.hook_post", ...)` around its nonlinearity. Linear
layers that write into the residual stream carry `residual_out = True`, so `LM` gives them the
scaled GPT-2 init whatever their names are.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from model.hooks import NO_HOOK, Hook
from model.registry import get, mlp, norm

ACTIVATIONS = {"gelu": F.gelu, "relu": F.relu, "gelu_tanh": partial(F.gelu, approximate="tanh")}


@norm("layernorm")
class LayerNorm(nn.LayerNorm):
    """LayerNorm with a learned scale and shift (GPT-2)."""

    def __init__(self, mp: Any, bias: bool = True):
        super().__init__(mp.dim, eps=mp.layer_norm_eps, bias=bias)


@norm("rmsnorm")
class RMSNorm(nn.RMSNorm):
    """RMSNorm: rescale by the root mean square, learned scale, no shift (Llama)."""

    def __init__(self, mp: Any, bias: bool = False):
        super().__init__(mp.dim, eps=mp.layer_norm_eps)


@mlp("mlp")
class MLP(nn.Module):
    """linear1 → activation (ModelParams.activation) → dropout → linear2 (GPT-2, torch's layer)."""

    def __init__(self, mp: Any, bias: bool = True):
        super().__init__()
        hidden = ff_hidden(mp)
        self.linear1 = nn.Linear(mp.dim, hidden, bias=bias)
        self.activation = ACTIVATIONS[mp.activation]
        self.dropout = nn.Dropout(mp.dropout)
        self.linear2 = nn.Linear(hidden, mp.dim, bias=bias)
        self.linear2.residual_out = True

    def forward(self, x: Tensor, hook: Hook = NO_HOOK) -> Tensor:
        x = hook("mlp.hook_pre", self.linear1(x))
        x = hook("mlp.hook_post", self.activation(x))
        return self.linear2(self.dropout(x))


@mlp("swiglu")
class SwiGLU(nn.Module):
    """down(silu(gate(x)) * up(x)) (Llama); hidden width `ff_dim`, else 2/3 · dim_ff_factor · dim, a multiple of 8."""

    def __init__(self, mp: Any, bias: bool = False):
        super().__init__()
        hidden = ff_hidden(mp, swiglu_hidden(mp.dim, mp.dim_ff_factor))
        self.gate_up = nn.Linear(mp.dim, 2 * hidden, bias=bias)  # [gate; up] in one matmul
        self.down = nn.Linear(hidden, mp.dim, bias=bias)
        self.down.residual_out = True
        self.dropout = nn.Dropout(mp.dropout)

    def forward(self, x: Tensor, hook: Hook = NO_HOOK) -> Tensor:
        gate, up = hook("mlp.hook_pre", self.gate_up(x)).chunk(2, dim=-1)
        x = hook("mlp.hook_post", F.silu(gate) * up)
        return self.down(self.dropout(x))


def ff_hidden(mp: Any, from_factor: int | None = None) -> int:
    """The feed-forward width: `ff_dim` when set (pretrained models state theirs), else from `dim_ff_factor`."""
    explicit = getattr(mp, "ff_dim", None)
    if explicit is not None:
        return explicit
    return mp.dim_ff_factor * mp.dim if from_factor is None else from_factor


def swiglu_hidden(dim: int, factor: int, multiple: int = 8) -> int:
    """Llama's rule: 2/3 of the plain MLP's width (same parameter count), rounded up to `multiple`."""
    h = int(2 * factor * dim / 3)
    return multiple * ((h + multiple - 1) // multiple)


def build(kind: str, name: str, mp: Any, **kw: Any) -> nn.Module:
    """An instance of the registered component `name` of `kind`."""
    return get(kind, name)(mp, **kw)


def init_gpt2(module: nn.Module, n_layers: int, std: float = 0.02) -> None:
    """GPT-2 init for any block: matrices normal(0.02), biases zero, norms one, and linears tagged
    `residual_out` (they write into the residual stream) normal(0.02 / sqrt(2·layers)). Decided by
    tags and shapes, not by one block's parameter names; same draws, in the same order, as before
    the registries (so a seed gives the same model)."""
    resid_std = std / (2 * n_layers) ** 0.5

    def visit(m: nn.Module) -> None:
        for name, p in m.named_parameters(recurse=False):
            if name == "bias" or name.endswith("_bias"):
                nn.init.zeros_(p)
            elif isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
                nn.init.ones_(p)
            elif p.dim() >= 2:
                nn.init.normal_(p, 0.0, std)
        for child in m.children():
            if isinstance(child, nn.Linear) and getattr(child, "residual_out", False):
                nn.init.normal_(child.weight, 0.0, resid_std)

    module.apply(visit)
