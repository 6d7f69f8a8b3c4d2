"""Perplexity / cross-entropy of an LM over samples or a dataloader (`LM.perplexities`).

Streams: only running sums and extremes are kept (plus the per-token table when asked for),
so a dataloader of any length is evaluated in memory bounded by one batch.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Iterator, Sequence

import torch
from torch import Tensor

from core.batch import mycollate


def _batches(lm: Any, data: Any, batch_size: int) -> Iterator[dict[str, Tensor]]:
    if isinstance(data, str):
        data = [data]
    if isinstance(data, (list, tuple)):
        for i in range(0, len(data), batch_size):
            chunk = data[i : i + batch_size]
            ids = [lm.tokenizer(s) if isinstance(s, str) else list(s) for s in chunk]
            yield mycollate(ids, pad_id=lm.tokenizer.pad_id)
    else:
        yield from data  # a DataLoader (or any iterable) of {"x_indices", "mask"} batches


@torch.no_grad()
def perplexities(
    lm: Any, samples_or_dataloader: Sequence[str] | Sequence[Sequence[int]] | Iterable[dict[str, Tensor]],
    per_token: bool = False, before_exp: bool = False, dummy_res: float = -1, batch_size: int = 32,
) -> tuple[float, float, float, int, Tensor | list]:
    """→ mean, max, min, total_tokens, per_token_res.

    Over every predicted token (position 1 onwards of each sample, padding excluded): `mean` is
    exp of the mean cross-entropy (the usual perplexity), `max`/`min` the largest/smallest
    per-token perplexity, `total_tokens` how many tokens were predicted. `before_exp=True` gives
    the cross-entropies themselves (nats). `per_token_res` is (n samples × (longest - 1)) with
    `dummy_res` wherever nothing was predicted, or `[]` unless `per_token=True`.
    Strings are tokenized with the LM's tokenizer (BOS first, no EOS added).
    """
    was_training = lm.training
    lm.eval()
    total, n = torch.zeros((), dtype=torch.float64), 0
    hi, lo = -math.inf, math.inf
    rows: list[Tensor] = []
    try:
        for batch in _batches(lm, samples_or_dataloader, batch_size):
            losses, mask, _ = lm.token_losses(batch)
            losses, mask = losses.float().cpu().double(), mask.bool().cpu()  # float64 on the CPU: any device
            if mask.any():
                real = losses[mask]
                total += real.sum().cpu()
                n += int(mask.sum())
                hi, lo = max(hi, float(real.max())), min(lo, float(real.min()))
            if per_token:
                vals = losses if before_exp else losses.exp()
                rows.append(vals.masked_fill(~mask, dummy_res).float().cpu())
    finally:
        lm.train(was_training)
    if n == 0:
        raise ValueError("perplexities(): no token to predict (every sample is shorter than 2 tokens)")
    mean = float(total) / n
    stats = (mean, hi, lo) if before_exp else (math.exp(mean), math.exp(hi), math.exp(lo))
    per_token_res: Tensor | list = []
    if per_token:
        width = max(r.shape[1] for r in rows)
        per_token_res = torch.cat([torch.nn.functional.pad(r, (0, width - r.shape[1]), value=dummy_res) for r in rows])
    return stats[0], stats[1], stats[2], n, per_token_res
