"""Turning next-token logits into a choice: temperature, top-k, nucleus (top-p)."""
from __future__ import annotations

import torch
from torch import Tensor


def check_sampling_args(temperature: float, nucleus: float | None, top_k: int | None) -> None:
    if nucleus is not None and top_k is not None:
        raise ValueError("sample(): `nucleus` and `top_k` are mutually exclusive; pass only one of them")
    if temperature < 0:
        raise ValueError(f"sample(): temperature must be >= 0, got {temperature}")
    if nucleus is not None and not 0 < nucleus <= 1:
        raise ValueError(f"sample(): nucleus must be in (0, 1], got {nucleus}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"sample(): top_k must be >= 1, got {top_k}")


def choose_next(
    logits: Tensor, temperature: float = 1.0, nucleus: float | None = None, top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """logits: (batch, vocab) → next ids (batch,). temperature 0 means argmax."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if nucleus is not None:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # mass strictly before each token
        drop_sorted = before >= nucleus  # keep the minimal prefix reaching `nucleus`
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
