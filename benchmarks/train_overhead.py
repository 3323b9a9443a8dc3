"""Training overhead: optik's Lightning training vs a bare PyTorch loop, same model, data and work, one run.

Both sides train the default CNN on mnist5k's training split with the same batches, augmentation, optimizer
and OneCycle schedule, and evaluate the validation split after every epoch. optik's side also writes what a
run writes (checkpoints, TensorBoard scalars, confusion-matrix images and weight histograms). The ratio is
optik's throughput over the bare loop's (training images per second of wall time); the bar is >= 0.90.

    python benchmarks/train_overhead.py [--epochs 4] [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from optik.augment import augment
from optik.core.seed import generator
from optik.data import TensorBatches, load_dataset, split_dataset
from optik.data.handles import MemorySplit, channel_stats
from optik.models import create_classifier
from optik.training.config import TrainConfig
from optik.training.datamodule import SplitDataModule
from optik.training.trainer import fit


def build(cfg, ds, splits):
    torch.manual_seed(cfg.seed)
    mean, std = channel_stats(MemorySplit(ds.images, splits["train"], ds.labels[splits["train"]], classes=ds.classes))
    return create_classifier(cfg.model, classes=ds.classes, in_channels=ds.channels, input_size=ds.image_size,
                             mean=mean, std=std)


def bare_loop(cfg: TrainConfig, ds, splits) -> float:
    """The loop a careful PyTorch user writes by hand; returns wall seconds."""
    model = build(cfg, ds, splits).to(memory_format=torch.channels_last)
    train = TensorBatches(ds.images[splits["train"]], ds.labels[splits["train"]], batch_size=cfg.batch_size,
                          shuffle=True, drop_last=True, seed=cfg.seed)
    val = TensorBatches(ds.images[splits["val"]], ds.labels[splits["val"]], batch_size=cfg.batch_size)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay}], lr=cfg.lr,
                          momentum=cfg.momentum, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * len(train),
                                                pct_start=cfg.warmup_fraction)
    augmentation = cfg.augmentation()
    start = time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        train.set_epoch(epoch)
        g = generator(cfg.seed, "augment", epoch, 0)
        for x, y in train:
            x = augment(x, augmentation, generator=g)[0].clamp_(0, 1)
            loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)), y,
                                   label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in val:
                correct += (model(x.contiguous(memory_format=torch.channels_last)).argmax(1) == y).sum().item()
    return time.perf_counter() - start


def optik_fit(cfg: TrainConfig, ds, splits) -> float:
    model = build(cfg, ds, splits)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train, val = (MemorySplit(ds.images, splits[k], ds.labels[splits[k]], classes=ds.classes)
                      for k in ("train", "val"))
        fit(model, SplitDataModule(train, val, batch_size=cfg.batch_size, seed=cfg.seed), cfg, Path(tmp),
            checkpoint=None, progress=False)
        return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    cfg = TrainConfig(epochs=args.epochs)
    ds = load_dataset("mnist5k")
    splits = split_dataset(ds, val_fraction=cfg.val_fraction, test_fraction=cfg.test_fraction, seed=cfg.split_seed)
    n_images = (len(splits["train"]) // cfg.batch_size) * cfg.batch_size * cfg.epochs
    bare_loop(TrainConfig(epochs=1), ds, splits)  # warm-up: kernels, allocator
    times = {"bare": [], "optik": []}
    for _ in range(args.rounds):  # interleaved, so drift in machine speed hits both sides alike
        times["bare"].append(bare_loop(cfg, ds, splits))
        times["optik"].append(optik_fit(cfg, ds, splits))
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {
        "benchmark": "train_overhead", "model": cfg.model, "data": "mnist5k", "epochs": cfg.epochs,
        "train_images": n_images, "threads": torch.get_num_threads(), "torch": str(torch.__version__),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "bare_images_per_s": round(n_images / med["bare"], 1), "optik_images_per_s": round(n_images / med["optik"], 1),
        "ratio_optik_over_bare": round(med["bare"] / med["optik"], 3),
        "seconds": {k: [round(t, 2) for t in v] for k, v in times.items()},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
