"""KV cache for incremental decoding: each layer's keys and values for the tokens seen so far.

`LM.forward(x, kv_cache=cache)` reads positions from `cache.length`, and each attention call
appends its new keys/values and attends over all of them, so a sampling step costs one token's
forward instead of the whole prefix's. Beam search reorders the batch with `reorder`.
"""
from __future__ import annotations

import torch
from torch import Tensor


class LayerKV:
    """Keys and values of one attention layer: (batch, heads, tokens so far, head_dim)."""

    def __init__(self) -> None:
        self.k: Tensor | None = None
        self.v: Tensor | None = None

    @property
    def length(self) -> int:
        return 0 if self.k is None else self.k.shape[-2]

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """Add the new tokens' k, v and return the keys/values of every token so far."""
        if self.k is None:
            self.k, self.v = k, v
        else:
            self.k = torch.cat([self.k, k], dim=-2)
            self.v = torch.cat([self.v, v], dim=-2)
        return self.k, self.v

    def reorder(self, index: Tensor) -> None:
        if self.k is not None:
            self.k, self.v = self.k.index_select(0, index), self.v.index_select(0, index)


class KVCache:
    """One `LayerKV` per layer, created on first use (layers without attention never ask)."""

    def __init__(self) -> None:
        self.layers: dict[int, LayerKV] = {}
        self.length = 0  # tokens already processed (the position of the next token)
        self.ids: Tensor | None = None  # (batch, tokens so far incl. the current call's): for edits that look at the whole input

    def add_ids(self, x: Tensor) -> None:
        self.ids = x if self.ids is None or x.dim() != 2 else torch.cat([self.ids, x], dim=1)

    def layer(self, i: int) -> LayerKV:
        return self.layers.setdefault(i, LayerKV())

    def advance(self, n: int) -> None:
        self.length += n

    def reorder(self, index: Tensor) -> None:
        """Keep batch rows `index` (in that order): beam search's parent beams."""
        for kv in self.layers.values():
            kv.reorder(index)
        if self.ids is not None:
            self.ids = self.ids.index_select(0, index)
