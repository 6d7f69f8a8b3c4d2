"""Positional encodings, chosen by `ModelParams.pos_encoding` (registered with `@pos_encoding`).

Each maps (B, T) positions to (B, T, dim), added to the token embeddings: 'learned',
'sinusoidal', 'random' (sinusoidal vectors at random sorted positions, see
`RandomPositionalEncoding`) and 'none'. An encoding may also act inside attention: its class
method `qk_rotation(mp, head_dim)` returns a module that the attention component applies to
queries and keys ('rotary' does, and adds nothing to the embeddings). Blocks whose attention
is not ours (`torch-transformer`) refuse such encodings.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from core.errors import UserError
from model.model_params import ModelParams
from model.registry import _runtime, get, pos_encoding

POS_ENCODINGS: dict[str, type[nn.Module]] = _runtime["pos_encoding"]  # the registry (model/registry.py)


class PositionalEncoding(nn.Module):
    """Base of the registered encodings: nothing acts inside attention unless `qk_rotation` says so."""

    @classmethod
    def qk_rotation(cls, mp: ModelParams, head_dim: int) -> nn.Module | None:
        return None


@pos_encoding("learned")
class LearnedPositionalEncoding(PositionalEncoding):
    """A learned vector per position (GPT-2)."""

    def __init__(self, mp: ModelParams):
        super().__init__()
        self.embedding = nn.Embedding(mp.max_seq_len, mp.dim)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.embedding(positions)


@pos_encoding("sinusoidal")
class SinusoidalPositionalEncoding(PositionalEncoding):
    """The original transformer's fixed sin/cos vectors."""

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
class NoPositionalEncoding(PositionalEncoding):
    """No positional information (causal attention still orders tokens implicitly)."""

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
class RandomPositionalEncoding(PositionalEncoding):
    """Sinusoidal vectors at random sorted positions < max_posencs (as in semantic blotching's RandPositionalEncoding).

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
    """RoPE: rotates queries and keys by their positions inside attention; adds nothing to the embeddings."""

    @classmethod
    def qk_rotation(cls, mp: ModelParams, head_dim: int) -> nn.Module:
        return Rotary(head_dim, mp.rotary_frac, mp.rotary_base, mp.max_seq_len)


def rotary_dims(head_dim: int, frac: float) -> int:
    """How many of a head's dimensions rotate; refuses an odd count with one line."""
    n = head_dim * frac
    if n != int(n) or int(n) % 2 or n <= 0:
        raise UserError(f"pos_encoding='rotary' needs an even head dimension times rotary_frac "
                        f"(dim/n_heads = {head_dim}, rotary_frac={frac} gives {n:g} rotated dimensions)")
    return int(n)


def rotary_cos_sin(positions: torch.Tensor, rot_dim: int, base: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the RoPE angles pos * base^(-2i/rot_dim): positions (...) → (..., rot_dim/2)."""
    inv_freq = base ** (-torch.arange(0, rot_dim, 2, device=positions.device, dtype=torch.float32) / rot_dim)
    angles = positions.to(torch.float32)[..., None] * inv_freq
    return angles.cos(), angles.sin()


def rotate(t: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first 2·cos.shape[-1] dims of t in (even, odd) pairs; the rest pass unchanged."""
    r = 2 * cos.shape[-1]
    rot, rest = t[..., :r], t[..., r:]
    even, odd = rot[..., 0::2], rot[..., 1::2]
    out = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)
    return torch.cat((out, rest), dim=-1) if rest.shape[-1] else out


def apply_rotary(t: torch.Tensor, positions: torch.Tensor | None = None, rot_dim: int | None = None, base: float = 10000.0) -> torch.Tensor:
    """Rotate (batch, heads, seq, head_dim) queries or keys by their positions, pairs of dims at a time.

    `positions` (batch, seq) are absolute positions (None: 0..seq-1). After rotating both q and
    k, the score q_m . k_n depends on the positions m and n only through m - n.
    """
    if positions is None:
        positions = torch.arange(t.shape[-2], device=t.device)
    else:
        positions = positions[:, None, :]  # broadcast over heads
    cos, sin = rotary_cos_sin(positions, rot_dim or t.shape[-1], base)
    return rotate(t, cos.to(t.dtype), sin.to(t.dtype))


class Rotary(nn.Module):
    """The q/k rotation a rotary encoding hands to the attention component (a table, built once)."""

    def __init__(self, head_dim: int, frac: float, base: float, max_seq_len: int):
        super().__init__()
        self.rot_dim = rotary_dims(head_dim, frac)
        cos, sin = rotary_cos_sin(torch.arange(max_seq_len), self.rot_dim, base)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """q, k: (batch, heads, seq, head_dim); positions (batch, seq) or None (0..seq-1)."""
        if positions is None:
            cos, sin = self.cos[: q.shape[-2]], self.sin[: q.shape[-2]]
        else:
            cos, sin = self.cos[positions][:, None], self.sin[positions][:, None]
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        return rotate(q, cos, sin), rotate(k, cos, sin)


def make_pos_encoding(mp: ModelParams) -> nn.Module:
    return get("pos_encoding", mp.pos_encoding)(mp)
