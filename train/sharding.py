"""Each rank's share of the resumable training order, for several processes (DDP / FSDP).

Every rank builds the same datasets and the same shuffled order (`ResumableSampler`, seeded by
the run seed); rank r of W then takes items r, r+W, r+2W, ... of that order, exactly as
Lightning's `DistributedSamplerWrapper` would. So the global batch k (all ranks' batch k
together) holds the same samples as batch k of a one-process run whose batch is W times larger.

Lightning's wrapper is not used because it assumes the inner sampler always yields a full epoch;
a resumed `ResumableSampler` yields the rest of an epoch, which it would index past the end.
Being a `DistributedSampler`, this class is left alone by Lightning's sampler replacement.
"""
from __future__ import annotations

import math
from typing import Any, Iterator

from torch.utils.data import DistributedSampler


class ShardedSampler(DistributedSampler):
    def __init__(self, sampler: Any, num_replicas: int, rank: int):
        super().__init__(range(len(sampler)), num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.sampler = sampler
        sampler.replicas = num_replicas  # resuming skips batches × batch_size × replicas items of the global order

    def __iter__(self) -> Iterator[int]:
        order = list(self.sampler)
        short = -len(order) % self.num_replicas
        if order and short:  # pad with the first items, like DistributedSampler, so every rank runs as many batches
            order += (order * math.ceil(short / len(order)))[:short]
        return iter(order[self.rank :: self.num_replicas])

    def __len__(self) -> int:
        return math.ceil(len(self.sampler) / self.num_replicas)

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.sampler.set_epoch(epoch)


def shard_for(trainer: Any, sampler: Any) -> Any:
    """`sampler` itself with one process (or outside a Trainer); this rank's `ShardedSampler` with several."""
    if trainer is None or trainer.world_size <= 1:
        return sampler
    return ShardedSampler(sampler, trainer.world_size, trainer.global_rank)
