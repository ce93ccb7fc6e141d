"""Epoch-addressed sampling: deterministic order per (seed, epoch), split across processes."""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler):
    """Yields (epoch, index) keys for one epoch, this process's share, whole batches only.

    Like DistributedSampler with drop_last: every process gets the same number of batches, and
    different images. `start(epoch, skip_batches)` positions it, so a resumed run continues
    mid-epoch exactly where the interrupted one stopped.
    """

    def __init__(self, size: int, *, batch_size: int, seed: int, shuffle: bool,
                 rank: int = 0, world_size: int = 1):
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle
        self.rank, self.world_size = rank, world_size
        self.batches_per_epoch = size // world_size // batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(f"the dataset has {size} images, fewer than --batch_size {batch_size} "
                             f"x {world_size} process(es): lower --batch_size or add images")
        self.epoch, self.skip_batches = 0, 0

    def start(self, epoch: int, skip_batches: int = 0) -> None:
        self.epoch, self.skip_batches = epoch, skip_batches

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.size)
        mine = order[self.rank::self.world_size][: self.batches_per_epoch * self.batch_size]
        for index in mine[self.skip_batches * self.batch_size:].tolist():
            yield self.epoch, index

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.skip_batches) * self.batch_size
