"""Feeds split handles to Lightning: ``uint8`` batches, sharded by rank, resumable mid-epoch."""
from __future__ import annotations

import lightning as L

from optik.data.batches import BatchOrder
from optik.data.handles import Batches, Split


class SplitDataModule(L.LightningDataModule):
    """Train / val batches from :class:`~optik.data.handles.Split` handles. In-memory splits move to the training
    device once (in ``setup``); file splits are decoded by ``workers`` processes and arrive pinned. Batches are
    ``uint8``: the task converts them to float on the device."""

    def __init__(self, train: Split, val: Split | None, *, batch_size: int, seed: int, workers: int | None = None):
        super().__init__()
        self.train, self.val = train, val if val is not None and len(val) else None
        self.batch_size, self.seed, self.workers = batch_size, seed, workers
        self.train_batches: Batches | None = None
        self.val_batches: Batches | None = None

    def steps_per_epoch(self, world_size: int) -> int:
        return len(BatchOrder(len(self.train), self.batch_size, shuffle=True, drop_last=True, world_size=world_size))

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device
        common = dict(seed=self.seed, rank=self.trainer.global_rank, world_size=self.trainer.world_size,
                      device=device, workers=self.workers)
        self.train_batches = self.train.batches(self.batch_size, shuffle=True, drop_last=True, **common)
        if self.val is not None:
            self.val_batches = self.val.batches(self.batch_size, **common)

    def set_epoch(self, epoch: int) -> None:
        self.train_batches.set_epoch(epoch)

    def set_start(self, batch: int) -> None:
        """The next training pass starts at this batch of the epoch's order (a run resumed mid-epoch)."""
        self.train_batches.set_start(batch)

    def train_dataloader(self):
        return self.train_batches

    def val_dataloader(self):
        return self.val_batches if self.val_batches is not None else []
