"""The block interface: what the harness needs from a layer to give it hooks, the KV cache,
sampling, saving and reloading.

A block is an `nn.Module` subclassing `Block`, with `forward(x, ctx) -> x` on the residual
stream (batch, seq, dim). `ctx` carries, for this block and this call, the hook callable
already scoped to `blocks.{i}.`, its `LayerKV` (or None), the absolute positions and
`attn_requests`. The stack (`Transformer`) adds `hook_resid_pre`/`hook_resid_post` around every
block; the components inside (attention, MLP) add theirs. Register a block with
`@block("name")` (model/registry.py) and `layer_architecture="name"` selects it.

Modules that are not blocks may sit in the stack only if they have no parameters (an injected
`nn.ReLU()`, as in the seed's example): they are applied to each position alone, which keeps the
KV cache right. Wrap any other position-wise module in `PositionWise`; anything that mixes
positions must be a `Block` (so it gets the KV cache), or the forward stops with one line.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from model.hooks import NO_HOOK, Hook
from model.kv_cache import LayerKV
from model.transformer import torch_f_multi_head_attention_forward as attn_math


@dataclass
class BlockContext:
    """Per-call inputs of one block besides the residual stream."""

    hook: Hook = NO_HOOK
    kv_cache: LayerKV | None = None
    positions: Tensor | None = None  # (batch, seq) absolute positions of x's tokens
    attn_requests: Any = None


class Block(nn.Module):
    """Base class of every block: `forward(x, ctx)` maps the residual stream to the new one."""

    def forward(self, x: Tensor, ctx: BlockContext) -> Tensor:
        raise NotImplementedError

    def attention_path(self) -> str:
        """One line naming the attention computation this block runs (printed by every run)."""
        return attn_math.attention_path()


class PositionWise(Block):
    """A module that acts on each position alone (e.g. a per-token MLP), usable in the stack."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, x: Tensor, ctx: BlockContext) -> Tensor:
        return self.module(x)

    def attention_path(self) -> str:
        return ""


def check_stack_member(i: int, layer: nn.Module) -> None:
    """Refuse, with one line, a non-block with parameters: it might mix positions and miss the KV cache."""
    if isinstance(layer, Block) or next(layer.parameters(), None) is None:
        return
    raise TypeError(
        f"layer {i} ({type(layer).__name__}) has parameters but is not a model.transformer.block.Block: "
        f"subclass Block (forward(x, ctx); it then gets hooks and the KV cache) or, if it acts on each position alone, "
        f"wrap it as PositionWise(module)"
    )
