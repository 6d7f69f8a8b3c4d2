"""Positional encodings, chosen by `ModelParams.pos_encoding`. Each maps (B, T) positions to (B, T, dim).

Added to the token embeddings: 'learned', 'sinusoidal', 'random' (sinusoidal vectors at
random sorted positions, see `RandomPositionalEncoding`) and 'none'. 'rotary' adds nothing
here: it rotates queries and keys inside the custom attention function (`apply_rotary`), so
it needs `layer_architecture='custom-transformer'`.
"""
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


def sinusoid_table(n: int, dim: int) -> torch.Tensor:
    """(n, dim) sin/cos table of the original transformer."""
    pos = torch.arange(n).unsqueeze(1)
    div = torch.exp(torch.arange(0, dim, 2) * (-math.log(10000.0) / dim))
    table = torch.zeros(n, dim)
    table[:, 0::2] = torch.sin(pos * div)
    table[:, 1::2] = torch.cos(pos * div)[:, : dim // 2]
    return table


@pos_encoding("random")
class RandomPositionalEncoding(nn.Module):
    """Randomised positions (as in semantic blotching's RandPositionalEncoding).

    Each sequence draws max_seq_len sorted distinct positions from 0..max_posencs-1 and its
    token t gets the sinusoidal vector of the t-th one. The draw is fresh for every sequence in
    training, so the model learns the order of its positions, not their values. Outside
    training all sequences share one fixed-seed draw, so evaluation and sampling are
    deterministic, independent of the batching, and a token's encoding never depends on how
    many tokens follow it (incremental decoding sees the same encodings as a full pass).
    """

    def __init__(self, mp: ModelParams):
        super().__init__()
        self.max_posencs, self.max_seq_len = mp.max_posencs, mp.max_seq_len
        if mp.max_posencs < mp.max_seq_len:
            from train.errors import UserError

            raise UserError(
                f"pos_encoding='random' needs max_posencs >= max_seq_len (got {mp.max_posencs} < {mp.max_seq_len}); raise max_posencs"
            )
        self.register_buffer("table", sinusoid_table(mp.max_posencs, mp.dim), persistent=False)

    def sample_positions(self, batch: int, device: torch.device) -> torch.Tensor:
        """(batch, max_seq_len) sorted distinct positions in [0, max_posencs)."""
        if self.training:
            scores = torch.rand(batch, self.max_posencs)
        else:
            gen = torch.Generator(device="cpu").manual_seed(0)
            scores = torch.rand(1, self.max_posencs, generator=gen).expand(batch, -1)
        return scores.topk(self.max_seq_len, dim=1).indices.sort(dim=1).values.to(device)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        drawn = self.sample_positions(positions.shape[0], positions.device)
        return self.table[drawn.gather(1, positions)]


@pos_encoding("rotary")
class RotaryPositionalEncoding(NoPositionalEncoding):
    """Nothing is added to the embeddings; the attention function rotates q and k (`apply_rotary`)."""


def rotary_cos_sin(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the RoPE angles pos * base^(-2i/head_dim): positions (...) → (..., head_dim/2)."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=positions.device, dtype=torch.float32) / head_dim)
    angles = positions.to(torch.float32)[..., None] * inv_freq
    return angles.cos(), angles.sin()


def apply_rotary(t: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate (batch, heads, seq, head_dim) queries or keys by their positions, pairs of dims at a time.

    `positions` (batch, seq) are absolute positions (None: 0..seq-1). After rotating both q and
    k, the score q_m . k_n depends on the positions m and n only through m - n.
    """
    if positions is None:
        positions = torch.arange(t.shape[-2], device=t.device)
    else:
        positions = positions[:, None, :]  # broadcast over heads
    cos, sin = rotary_cos_sin(positions, t.shape[-1])
    cos, sin = cos.to(t.dtype), sin.to(t.dtype)
    even, odd = t[..., 0::2], t[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


def make_pos_encoding(mp: ModelParams) -> nn.Module:
    from train.errors import UserError

    if mp.pos_encoding not in POS_ENCODINGS:
        raise UserError(f"unknown pos_encoding {mp.pos_encoding!r}; use one of {', '.join(POS_ENCODINGS)}")
    if mp.pos_encoding == "rotary":
        if mp.layer_architecture != "custom-transformer":
            raise UserError(
                f"pos_encoding='rotary' rotates queries and keys inside our attention function; "
                f"set layer_architecture='custom-transformer' (got {mp.layer_architecture!r})"
            )
        if (mp.dim // mp.n_heads) % 2:
            raise UserError(f"pos_encoding='rotary' needs an even head dimension (dim/n_heads = {mp.dim // mp.n_heads})")
    return POS_ENCODINGS[mp.pos_encoding](mp)
