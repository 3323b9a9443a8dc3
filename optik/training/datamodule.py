"""Feeds in-memory splits to Lightning as index batches, sharded by rank."""
from __future__ import annotations

import lightning as L
import torch

from optik.data.batches import TensorBatches
from optik.data.dataset import ImageDataset


class TensorDataModule(L.LightningDataModule):
    """Train / val batches over one ``uint8`` tensor; moved once to the training device in ``setup``."""

    def __init__(self, ds: ImageDataset, splits: dict[str, torch.Tensor], *, batch_size: int, seed: int):
        super().__init__()
        self.ds, self.splits, self.batch_size, self.seed = ds, splits, batch_size, seed
        self.train_batches: TensorBatches | None = None
        self.val_batches: TensorBatches | None = None

    def steps_per_epoch(self, world_size: int) -> int:
        idx = self.splits["train"]
        return len(TensorBatches(idx, idx, batch_size=self.batch_size, shuffle=True, drop_last=True,
                                 world_size=world_size))

    def setup(self, stage: str) -> None:
        device = self.trainer.strategy.root_device
        rank, world = self.trainer.global_rank, self.trainer.world_size

        def batches(split: str, train: bool) -> TensorBatches:
            idx = self.splits[split]
            return TensorBatches(self.ds.images[idx].to(device), self.ds.labels[idx].to(device),
                                 batch_size=self.batch_size, shuffle=train, drop_last=train, seed=self.seed,
                                 rank=rank, world_size=world)

        self.train_batches = batches("train", True)
        if len(self.splits.get("val", ())):
            self.val_batches = batches("val", False)

    def set_epoch(self, epoch: int) -> None:
        self.train_batches.set_epoch(epoch)

    def train_dataloader(self):
        return self.train_batches

    def val_dataloader(self):
        return self.val_batches if self.val_batches is not None else []
