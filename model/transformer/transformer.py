"""The stack of layers between the embeddings and the output head.

`layers` may hold torch's `nn.TransformerEncoderLayer`, our `TransformerEncoderLayer`, or any
other module mapping (batch, seq, dim) → (batch, seq, dim) (e.g. an injected `nn.ReLU()`).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from model.model_params import ModelParams
from model.transformer.transformerencoderlayer import TransformerEncoderLayer

ARCHITECTURES = ("torch-transformer", "custom-transformer")


def make_torch_layer(mp: ModelParams) -> nn.TransformerEncoderLayer:
    return nn.TransformerEncoderLayer(
        d_model=mp.dim,
        nhead=mp.n_heads,
        dim_feedforward=mp.dim_ff_factor * mp.dim,
        dropout=mp.dropout,
        activation=mp.activation,
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
        self, x: Tensor, get_attns: bool = False, get_embeddings: bool = False, attn_requests: Any = None
    ) -> dict[str, Any]:
        """x: (batch, seq, dim) embedded input. Returns `out` and, when asked, per-layer `attns`/`embeddings`."""
        attns: list[Tensor] = []
        embeddings: list[Tensor] = []
        for layer in self.layers:
            if isinstance(layer, TransformerEncoderLayer):
                x, w = layer(x, need_weights=get_attns, attn_requests=attn_requests)
            elif isinstance(layer, nn.TransformerEncoderLayer):
                mask = self.causal_mask(x.shape[1], x.device)
                w = torch_layer_attn_weights(layer, x, mask) if get_attns else None
                x = layer(x, src_mask=mask, is_causal=True)
            else:
                x, w = layer(x), None
            if get_attns and w is not None:
                attns.append(w)
            if get_embeddings:
                embeddings.append(x)
        return {"out": self.norm(x), "attns": attns, "embeddings": embeddings}


def torch_layer_attn_weights(layer: nn.TransformerEncoderLayer, x: Tensor, mask: Tensor) -> Tensor:
    """Per-head attention weights of a torch layer (it doesn't return them from forward)."""
    h = layer.norm1(x) if layer.norm_first else x
    _, w = layer.self_attn(h, h, h, attn_mask=mask, need_weights=True, average_attn_weights=False)
    return w
