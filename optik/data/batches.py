"""Batches by index over in-memory ``uint8`` images: no per-item Python, no worker processes."""
from __future__ import annotations

from typing import Iterator

import torch

from optik.core import seed as random
from optik.core.images import to_float
from optik.core.seed import generator


class TensorBatches:
    """An iterable of ``(images float [0, 1], labels)`` batches drawn from in-memory tensors.

    Shuffling is seeded by ``(seed, epoch)``, so a resumed run sees the same order as an uninterrupted one.
    Under data parallelism each rank takes a disjoint shard of the (shuffled) indices; training shards are
    cut to equal length so every rank runs the same number of steps.

    Args:
        images: ``uint8`` ``N x C x H x W`` (may already live on the training device).
        labels: ``N`` labels.
        batch_size: images per batch on each rank.
        shuffle: reshuffle every epoch (training); otherwise keep order (evaluation).
        seed: base seed of the shuffling.
        drop_last: drop a last incomplete batch (training: keeps BatchNorm statistics sane).
        rank, world_size: this process's share under data parallelism.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False, rank: int = 0, world_size: int = 1):
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed, self.drop_last = batch_size, shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.seen: list[torch.Tensor] = []  # indices yielded in the current epoch (for shard checks)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        n = len(self.labels)
        if self.shuffle:
            order = random.randperm(n, generator=generator(self.seed, "shuffle", self.epoch))
            order = order[: n - n % self.world_size]  # equal shards: every rank takes as many steps
        else:
            order = torch.arange(n)  # evaluation: every image exactly once, shards may differ by one
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        n = len(self.indices())
        if self.drop_last and n >= self.batch_size:
            return n // self.batch_size
        return -(-n // self.batch_size)  # a shard smaller than one batch still gives one (smaller) batch

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self.indices().to(self.images.device)
        self.seen = []
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, len(idx)), self.batch_size):
            b = idx[start : start + self.batch_size]
            self.seen.append(b)
            yield to_float(self.images[b]), self.labels[b]
