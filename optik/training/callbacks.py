"""Callbacks: atomic checkpoints read with ``weights_only=True``; TensorBoard images and histograms; DDP shard records."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from optik.core.errors import OptikError
from optik.core.io import atomic_write, write_json
from optik.evaluation.figures import confusion_image
from optik.models.io import safe_torch_load


class SafeCheckpointIO(TorchCheckpointIO):
    """Writes checkpoints to a temporary file and renames it (a crash never leaves half a file);
    reads them with ``weights_only=True`` (no arbitrary unpickling)."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options=None) -> None:
        atomic_write(path, lambda p: torch.save(checkpoint, p))

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict[str, Any]:
        return safe_torch_load(path, map_location=map_location or "cpu")


class TensorBoardExtras(L.Callback):
    """Each validation: the confusion matrix as an image; each training epoch: weight histograms.

    The per-epoch image is drawn without matplotlib (a Matplotlib figure costs about a second per epoch);
    the annotated figure is written once, at evaluation, to ``figures/confusion_matrix.png``.
    """

    def _writer(self, trainer: L.Trainer):
        logger = trainer.logger
        return getattr(logger, "experiment", None) if logger is not None and trainer.is_global_zero else None

    def on_validation_epoch_end(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        writer = self._writer(trainer)
        if writer is None or trainer.sanity_checking or task.val_metrics is None:
            return
        image = confusion_image(task.val_metrics["confusion_matrix"])
        writer.add_image("val/confusion_matrix", image, global_step=trainer.current_epoch, dataformats="HWC")

    def on_train_epoch_end(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        writer = self._writer(trainer)
        if writer is None:
            return
        for name, p in task.model.net.named_parameters():
            writer.add_histogram(f"weights/{name}", p.detach().float().cpu(), global_step=trainer.current_epoch)


class ShardRecorder(L.Callback):
    """Writes, per rank, the training indices seen in epoch 0 and the reduced validation metrics.

    Lets a test check that data-parallel ranks saw disjoint shards and agree on metrics reduced across them.
    """

    def __init__(self, folder: str | os.PathLike, train_indices: torch.Tensor):
        self.folder, self.train_indices = Path(folder), train_indices
        self.seen: list[int] = []

    def on_train_epoch_end(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        if trainer.current_epoch == 0:
            local = torch.cat(trainer.datamodule.train_batches.seen).cpu()
            self.seen = self.train_indices[local].tolist()  # positions in the whole dataset

    def on_fit_end(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        val = task.val_metrics or {}
        write_json(self.folder / f"rank{trainer.global_rank}.json", {
            "rank": trainer.global_rank, "world_size": trainer.world_size, "train_indices_epoch0": self.seen,
            "val_n": val.get("n"), "val_accuracy": val.get("accuracy"),
        })


class ResumeHint(L.Callback):
    """On Ctrl-C (or any crash), say where the last whole checkpoint is and how to continue from it."""

    def __init__(self, run: str | os.PathLike):
        self.run = Path(run)

    def on_exception(self, trainer: L.Trainer, task: L.LightningModule, exception: BaseException) -> None:
        if not trainer.is_global_zero or isinstance(exception, OptikError):  # ours explain themselves
            return
        last = self.run / "checkpoints" / "last.ckpt"
        where = f"the last completed epoch is saved in {last}" if last.is_file() else "no epoch had completed yet"
        import sys

        print(f"\noptik train: stopped by {type(exception).__name__}; {where}. "
              f"Continue with: optik train --resume {self.run}", file=sys.stderr)
