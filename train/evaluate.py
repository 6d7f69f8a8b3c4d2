"""One evaluation routine for validation during training, the final saved val loss, and reloads.

Sharing it is what lets `verify_stable_load` demand the exact val loss that was saved.
"""
from __future__ import annotations

from typing import Iterable

import torch

from model.lm import LM


def reduce_sums(sums: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> dict[str, float]:
    return {k: (s.double() / c.double().clamp(min=1)).item() for k, (s, c) in sums.items()}


def accumulate(total: dict[str, tuple[torch.Tensor, torch.Tensor]], new: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    for k, (s, c) in new.items():
        s, c = s.detach().double(), c.detach().double()
        if k in total:
            ts, tc = total[k]
            total[k] = (ts + s, tc + c)
        else:
            total[k] = (s, c)


@torch.no_grad()
def evaluate(lm: LM, batches: Iterable[dict[str, torch.Tensor]]) -> dict[str, float]:
    """Mean of every `lm.eval_sums` statistic over all batches (eval mode, restored afterwards)."""
    was_training = lm.training
    lm.eval()
    total: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    for batch in batches:
        accumulate(total, lm.eval_sums(batch))
    lm.train(was_training)
    return reduce_sums(total)
