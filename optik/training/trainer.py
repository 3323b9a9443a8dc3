"""The Trainer factory: devices, precision, strategy, checkpoints, logging. No math here."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import TensorBoardLogger

from optik.models.classifier import Classifier
from optik.models.io import safe_torch_load
from optik.training.callbacks import (LastCheckpoint, ResumeHint, SafeCheckpointIO, ShardRecorder, StepCheckpoint,
                                     TensorBoardExtras)
from optik.training.config import TrainConfig
from optik.training.datamodule import SplitDataModule
from optik.training.task import ClassificationTask

CHECKPOINTS = "checkpoints"


def build_trainer(cfg: TrainConfig, run: Path, *, has_val: bool, progress: bool, extra_callbacks=(),
                  log_every: int = 10) -> L.Trainer:
    monitor = "val/acc" if has_val else None
    callbacks = [
        # Lightning's save_last writes last.ckpt only on epochs that also write best.ckpt (a new best): a run
        # whose validation accuracy stopped improving kept an old last.ckpt and resumed from there.
        ModelCheckpoint(dirpath=run / CHECKPOINTS, filename="best", monitor=monitor, mode="max", save_last=False,
                        save_top_k=1, enable_version_counter=False),
        LastCheckpoint(run / CHECKPOINTS / "last.ckpt", every_seconds=0),  # every epoch
        *([StepCheckpoint(run / CHECKPOINTS / "last.ckpt", every=cfg.checkpoint_every)] if cfg.checkpoint_every
          else []),
        LearningRateMonitor(logging_interval="epoch"),
        TensorBoardExtras(),
        ResumeHint(run),
        *extra_callbacks,
    ]
    if cfg.early_stopping and has_val:
        callbacks.append(EarlyStopping(monitor="val/acc", mode="max", patience=cfg.early_stopping))
    if progress:
        callbacks.append(RichProgressBar(leave=True))
    _quiet_lightning()
    return L.Trainer(
        default_root_dir=run,
        max_epochs=cfg.epochs,
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=cfg.precision,
        logger=TensorBoardLogger(save_dir=str(run), name="tensorboard", version="", default_hp_metric=False),
        callbacks=callbacks,
        plugins=[SafeCheckpointIO()],
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=1.0 if has_val else 0,  # no validation split: no validation loop (and no warning)
        log_every_n_steps=log_every,
        deterministic=False,
        inference_mode=not cfg.adversarial,  # validation attacks the model: it needs gradients
        use_distributed_sampler=False,  # the split handles shard by rank themselves (optik.data.batches.BatchOrder)
    )


def _quiet_lightning() -> None:
    """Silence what Lightning prints that does not apply to optik's trainings: its device banner, tips and seed
    messages (info logs), batches from memory (no workers), a resumed run reusing its checkpoint directory, modules
    in eval mode at the start on purpose (weight averages, the BatchNorm layers of a frozen backbone), and a
    deprecation inside Lightning itself (its own use of torch's ``LeafSpec``)."""
    for noisy in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda",
                  "lightning.fabric.utilities.seed"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*`isinstance\\(treespec, LeafSpec\\)`.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode at the start of training.*")
    # optik's tasks convert uint8 batches on the device (on_after_batch_transfer) whatever the datamodule
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer` in `LightningModule`.*")


def fit(model: Classifier, datamodule: SplitDataModule, cfg: TrainConfig, run: Path, *, checkpoint: Path | None,
        progress: bool) -> tuple[Classifier, L.Trainer]:
    """Train ``model`` in place, from ``checkpoint`` when resuming; return it holding the last weights, or the best
    validation epoch's (``cfg.keep == "best"``; ties go to the earlier epoch); with ``cfg.ema_half_life``, those of
    the average."""
    has_val = datamodule.val is not None
    extra = [ShardRecorder(run / "shards")] if cfg.log_shards else []
    steps = datamodule.steps_per_epoch(cfg.devices * cfg.num_nodes)  # small datasets log every epoch at least
    trainer = build_trainer(cfg, run, has_val=has_val, progress=progress, extra_callbacks=extra,
                            log_every=max(1, min(10, steps)))
    model = model.to(memory_format=torch.channels_last)
    task = ClassificationTask(model, cfg, steps_per_epoch=datamodule.steps_per_epoch(trainer.world_size))
    trainer.fit(task, datamodule=datamodule, ckpt_path=str(checkpoint) if checkpoint is not None else None)
    best = run / CHECKPOINTS / "best.ckpt"
    prefix = "ema.average." if task.ema is not None else "model."
    if cfg.keep == "best" and has_val and best.is_file():
        load_task_weights(model, best, prefix=prefix)
    elif task.ema is not None:
        model.load_state_dict(task.ema.average.state_dict())
    return model, trainer


def load_task_weights(model: Classifier, ckpt: Path, *, prefix: str = "model.") -> None:
    """Load the ``prefix*`` weights of a Lightning checkpoint (read with ``weights_only=True``): ``model.``
    the trained weights, ``ema.average.`` their average."""
    state = safe_torch_load(ckpt)["state_dict"]
    state = {k.removeprefix(prefix): v for k, v in state.items() if k.startswith(prefix)}
    model.load_state_dict(state)


def fit_generative(task, datamodule: SplitDataModule, cfg, run: Path, *, checkpoint: Path | None, progress: bool,
                   monitor: L.Callback | None) -> L.Trainer:
    """Train a GAN / VAE task; ``checkpoints/best.ckpt`` holds the epoch of lowest ``quality/fid`` when
    ``monitor`` checks it, ``last.ckpt`` the end (of the epochs or of the ``max_minutes`` budget)."""
    import datetime as _dt

    has_val = datamodule.val is not None and hasattr(task, "validation_step")
    best = cfg.keep == "best" and monitor is not None and monitor.every > 0
    if monitor is not None:
        monitor.best_path = run / CHECKPOINTS / "best.ckpt"  # the monitor saves it: checks are every few epochs
    callbacks = [ResumeHint(run), *([monitor] if monitor is not None else []),
                 LastCheckpoint(run / CHECKPOINTS / "last.ckpt", every_seconds=30)]  # after the monitor's history
    if progress:
        callbacks.append(RichProgressBar(leave=True))
    _quiet_lightning()
    warnings.filterwarnings("ignore", message=".*`val_dataloader` but have no `validation_step`.*")  # GANs
    steps = datamodule.steps_per_epoch(cfg.devices)
    trainer = L.Trainer(
        default_root_dir=run, max_epochs=cfg.max_epochs, accelerator=cfg.accelerator, devices=cfg.devices,
        precision=cfg.precision,
        max_time=_dt.timedelta(minutes=cfg.max_minutes) if cfg.max_minutes else None,
        logger=TensorBoardLogger(save_dir=str(run), name="tensorboard", version="", default_hp_metric=False),
        callbacks=callbacks, plugins=[SafeCheckpointIO()], enable_progress_bar=progress, enable_checkpointing=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=1.0 if has_val else 0,
        log_every_n_steps=max(1, min(10, steps)), deterministic=False, use_distributed_sampler=False,
    )
    trainer.fit(task, datamodule=datamodule, ckpt_path=str(checkpoint) if checkpoint is not None else None)
    task.final_counts = {"steps": int(task.batches_done), "images_seen": int(task.images_seen)}  # before best
    if best and (run / CHECKPOINTS / "best.ckpt").is_file():
        state = safe_torch_load(run / CHECKPOINTS / "best.ckpt")["state_dict"]
        task.load_state_dict(state)
    return trainer
