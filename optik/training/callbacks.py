"""Callbacks: atomic checkpoints read with ``weights_only=True``; TensorBoard images and histograms; DDP shard records."""
from __future__ import annotations

import os
import time
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
        if writer is None or trainer.sanity_checking or task.val_metrics is None \
                or task.val_metrics["confusion_matrix"] is None:  # too many classes to keep one
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

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.seen: list[int] = []

    def on_train_epoch_end(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        if trainer.current_epoch == 0:  # positions in the training split
            self.seen = torch.cat(trainer.datamodule.train_batches.order.seen).tolist()

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


def is_last_epoch(trainer: L.Trainer) -> bool:
    """At the end of an epoch: is it the last one (the epochs are done, or a time budget / Ctrl-C stops here)?"""
    return trainer.should_stop or trainer.current_epoch + 1 >= trainer.max_epochs


def epoch_due(trainer: L.Trainer, every: int) -> bool:
    """Is a check that runs every ``every`` epochs due at the end of this one? The last epoch always is."""
    return (trainer.current_epoch + 1) % every == 0 or is_last_epoch(trainer)


class SampleMonitor(L.Callback):
    """For generative tasks, at the end of every training epoch: a grid of samples from fixed codes in TensorBoard,
    and every ``every`` epochs the FID of ``n`` samples against reference features, logged as ``quality/fid``
    (what ``keep=best`` monitors: GANs often end worse than their best epoch).

    Args:
        extractor: a feature module (pixels in [0, 1] -> ``N x D``), or None for grids only.
        reference: :class:`optik.generative.metrics.FeatureStats` of the real images (the training split).
        every: epochs between FID checks (0: never); the last epoch is always checked.
        n: generated images per check; ``seed``: fixes their codes, so epochs are compared on the same codes.
    """

    def __init__(self, extractor, reference, *, every: int, n: int, seed: int, grid: int = 64):
        self.extractor, self.reference, self.every, self.n, self.seed, self.grid = \
            extractor, reference, every, n, seed, grid
        self.history: list[dict] = []
        self.best_path: Path | None = None  # where to save the checkpoint of the lowest FID so far

    def state_dict(self) -> dict:
        return {"history": self.history}  # kept in the checkpoints: a resumed run reports its whole history

    def load_state_dict(self, state: dict) -> None:
        self.history = list(state.get("history", []))

    def setup(self, trainer: L.Trainer, task: L.LightningModule, stage: str) -> None:
        if self.extractor is not None:
            self.extractor.to(task.device)

    def on_train_epoch_end(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        from optik.core.seed import generator
        from optik.generative.metrics import FeatureStats, extract_features, frechet_distance

        epoch = trainer.current_epoch
        model = task.generative_model().to(task.device)
        if self.extractor is not None and self.every and epoch_due(trainer, self.every):
            x = model.sample(self.n, generator=generator(self.seed, "quality"))
            stats = FeatureStats.from_features(extract_features(self.extractor, x))
            import warnings

            with warnings.catch_warnings():  # fewer samples than features only biases the score: said in docs
                warnings.simplefilter("ignore", UserWarning)
                fid = frechet_distance(stats, self.reference)
            task.log("quality/fid", fid, prog_bar=True)
            best = min((h["fid"] for h in self.history), default=float("inf"))
            self.history.append({"epoch": epoch, "step": int(task.batches_done), "fid": fid})
            if self.best_path is not None and fid < best:  # ties keep the earlier epoch
                trainer.save_checkpoint(self.best_path, weights_only=False)  # with optimizers: resumable
        writer = getattr(trainer.logger, "experiment", None) if trainer.is_global_zero and trainer.logger else None
        if writer is not None:
            from torchvision.utils import make_grid

            x = model.sample(self.grid, generator=generator(self.seed, "grid"))
            writer.add_image("samples", make_grid(x.cpu(), nrow=int(self.grid ** 0.5), padding=1), epoch)


class StepCheckpoint(L.Callback):
    """Writes ``last.ckpt`` every ``every`` optimizer steps within an epoch, so that a long epoch is never lost.

    It writes at the start of the next batch, when every hook of the last one has run (the task's weight average
    and its record of the batches consumed): the checkpoint holds the data position and the random state, and
    ``--resume`` continues the epoch exactly where it stopped (see ClassificationTask.on_train_start).
    """

    def __init__(self, path: str | os.PathLike, *, every: int):
        self.path, self.every = Path(path), every

    def on_train_batch_start(self, trainer: L.Trainer, task: L.LightningModule, batch, batch_idx: int) -> None:
        if batch_idx > 0 and trainer.global_step > 0 and trainer.global_step % self.every == 0:
            trainer.save_checkpoint(self.path, weights_only=False)


class LastCheckpoint(L.Callback):
    """Writes ``last.ckpt`` at the end of an epoch (after its validation) when ``every_seconds`` have passed since
    the last write, and always at the last epoch (also one cut short by a time budget or early stopping).

    Classification writes every epoch (``every_seconds=0``). An epoch of a small generative model takes about 2 s;
    writing generator, discriminator, weight average and Adam states after every one of them cost about 5 % of a
    3-minute budget, so generative tasks write every 30 s. A kill loses at most this interval.
    """

    def __init__(self, path: str | os.PathLike, *, every_seconds: float):
        self.path, self.every_seconds = Path(path), every_seconds
        self._last_write = time.monotonic()

    def on_train_epoch_end(self, trainer: L.Trainer, task: L.LightningModule) -> None:
        if is_last_epoch(trainer) or time.monotonic() - self._last_write >= self.every_seconds:
            trainer.save_checkpoint(self.path, weights_only=False)
            self._last_write = time.monotonic()
