"""The order images are visited in: seeded by ``(seed, epoch)``, sharded by rank, resumable at a batch."""
from __future__ import annotations

from typing import Iterator

import torch

from optik.core import seed as random
from optik.core.images import to_float
from optik.core.seed import generator


class BatchOrder:
    """Index batches over ``n`` items: the order of an epoch, this rank's share of it, cut into batches.

    Shuffling is seeded by ``(seed, epoch)``, so a resumed run sees the same order as an uninterrupted one. Under
    data parallelism each rank takes a disjoint shard of the (shuffled) indices; training shards are cut to equal
    length so every rank runs the same number of steps, evaluation shards cover every item exactly once. It is a
    ``DataLoader`` ``batch_sampler`` too (it runs in the main process; workers get the batches).

    Args:
        n: items in the split.
        batch_size: items per batch on each rank.
        shuffle: reshuffle every epoch (training); otherwise keep order (evaluation).
        seed: base seed of the shuffling.
        drop_last: drop a last incomplete batch (training: keeps BatchNorm statistics sane).
        rank, world_size: this process's share under data parallelism.
    """

    def __init__(self, n: int, batch_size: int, *, shuffle: bool = False, seed: int = 0, drop_last: bool = False,
                 rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.shuffle, self.seed, self.drop_last = n, batch_size, shuffle, seed, drop_last
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start = 0  # the next pass starts at this batch (a run resumed mid-epoch), then 0 again
        self.seen: list[torch.Tensor] = []  # the batches of the current pass (for shard checks)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def indices(self) -> torch.Tensor:
        if self.shuffle:
            order = random.randperm(self.n, generator=generator(self.seed, "shuffle", self.epoch))
            order = order[: self.n - self.n % self.world_size]  # equal shards: every rank takes as many steps
        else:
            order = torch.arange(self.n)  # evaluation: every item exactly once, shards may differ by one
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        n = len(self.indices())
        if self.drop_last and n >= self.batch_size:
            return n // self.batch_size
        return -(-n // self.batch_size)  # a shard smaller than one batch still gives one (smaller) batch

    def __iter__(self) -> Iterator[torch.Tensor]:
        idx = self.indices()
        start, self.start = self.start, 0
        self.seen = []
        stop = len(self) * self.batch_size
        for begin in range(start * self.batch_size, min(stop, len(idx)), self.batch_size):
            b = idx[begin : begin + self.batch_size]
            self.seen.append(b)
            yield b


class TensorBatches:
    """An iterable of ``(images float [0, 1], labels)`` batches drawn from in-memory tensors, in a
    :class:`BatchOrder` (same arguments)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int, shuffle: bool = False,
                 seed: int = 0, drop_last: bool = False, rank: int = 0, world_size: int = 1):
        self.images, self.labels = images, labels
        self.order = BatchOrder(len(labels), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last,
                                rank=rank, world_size=world_size)

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    @property
    def seen(self) -> list[torch.Tensor]:
        return self.order.seen

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in self.order:
            b = b.to(self.images.device)
            yield to_float(self.images[b]), self.labels[b]
