"""The batch format data/ produces and model/ consumes: `{"x_indices": B×T long, "mask": B×T bool}`."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def mycollate(samples: Sequence[Sequence[int]] | Sequence[torch.Tensor], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """Pad a list of id sequences into `{"x_indices": B×T long, "mask": B×T bool}`."""
    seqs = [torch.as_tensor(np.asarray(s), dtype=torch.long).reshape(-1) for s in samples]
    if not seqs:
        raise ValueError("mycollate got no samples")
    T = max(len(s) for s in seqs)
    x = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.bool)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = s
        mask[i, : len(s)] = True
    return {"x_indices": x, "mask": mask}
