"""Positional encodings, chosen by `ModelParams.pos_encoding`. Each maps (B, T) positions to (B, T, dim)."""
from __future__ import annotations

import math

import torch
from torch import nn

from model.model_params import ModelParams

POS_ENCODINGS: dict[str, type[nn.Module]] = {}


def pos_encoding(name: str):
    def wrap(cls):
        POS_ENCODINGS[name] = cls
        return cls

    return wrap


@pos_encoding("learned")
class LearnedPositionalEncoding(nn.Module):
    def __init__(self, mp: ModelParams):
        super().__init__()
        self.embedding = nn.Embedding(mp.max_seq_len, mp.dim)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.embedding(positions)


@pos_encoding("sinusoidal")
class SinusoidalPositionalEncoding(nn.Module):
    def __init__(self, mp: ModelParams):
        super().__init__()
        pos = torch.arange(mp.max_seq_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, mp.dim, 2) * (-math.log(10000.0) / mp.dim))
        table = torch.zeros(mp.max_seq_len, mp.dim)
        table[:, 0::2] = torch.sin(pos * div)
        table[:, 1::2] = torch.cos(pos * div)[:, : mp.dim // 2]
        self.register_buffer("table", table, persistent=False)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.table[positions]


@pos_encoding("none")
class NoPositionalEncoding(nn.Module):
    def __init__(self, mp: ModelParams):
        super().__init__()
        self.dim = mp.dim

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*positions.shape, self.dim, device=positions.device)


def make_pos_encoding(mp: ModelParams) -> nn.Module:
    return POS_ENCODINGS[mp.pos_encoding](mp)
