"""The stack of blocks between the embeddings and the output head.

`layers` holds one block per layer, of the class registered as `layer_architecture`
(model/registry.py, `@block`). Every block gets, from here: the hook points
`blocks.{i}.hook_resid_pre` / `hook_resid_post` around it, its scoped hook callable, its slice
of the KV cache and the token positions (`BlockContext`). Parameter-free modules (e.g. the
seed's injected `nn.ReLU()`) may be inserted too; see model/transformer/block.py.
"""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from model.hooks import NO_HOOK, Hook
from model.kv_cache import KVCache
from model.model_params import ModelParams
from model.registry import get
from model.transformer.block import Block, BlockContext, check_stack_member
from model.transformer.components import build
from model.transformer.torch_layer import TorchTransformerLayer, torch_layer_forward  # noqa: F401  (registers the reference block; old import path)
from model.transformer.transformerencoderlayer import TransformerEncoderLayer  # noqa: F401  (registers the default block)


class Transformer(nn.Module):
    def __init__(self, model_params: ModelParams):
        super().__init__()
        self.model_params = mp = model_params
        block_cls = get("block", mp.layer_architecture)
        self.layers = nn.ModuleList([block_cls(mp) for _ in range(mp.n_layers)])
        # pre-norm stacks end with a norm of the blocks' kind (GPT-2's ln_f, Llama's final RMSNorm)
        norm_name = block_cls.norm_name(mp) if hasattr(block_cls, "norm_name") else "layernorm"
        self.norm = build("norm", norm_name, mp) if mp.norm_first else nn.Identity()

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
            if isinstance(layer, Block):
                kv = kv_cache.layer(i) if kv_cache is not None else None
                x = layer(x, BlockContext(h, kv, positions, attn_requests))
            else:
                check_stack_member(i, layer)
                x = layer(x)  # parameter-free, position-wise (e.g. nn.ReLU())
            x = h("hook_resid_post", x)
        return hook("ln_final.hook_normalized", self.norm(x))

    def attention_paths(self) -> list[str]:
        """The distinct attention computations the blocks run (one line each)."""
        return list(dict.fromkeys(p for layer in self.layers if isinstance(layer, Block) and (p := layer.attention_path())))
