"""optik on a GPU against a bare PyTorch loop doing the same work, in one run (issue #19).

    python benchmarks/gpu.py [--device cuda] [--steps 200] [--pgd-batches 20]

- training: ResNet-18 (timm ``resnet18``, random weights) on 32 x 32 RGB images, batch 512, bf16-mixed,
  channels_last, SGD: optik's ClassificationTask through Lightning (the path ``optik train`` takes, data in memory
  on the device) against a bare loop with ``torch.autocast``. Images/s over ``--steps`` steps after 20 warm-up steps.
- attack: PGD-10 (Linf, eps 8/255) at batch 1024 on the same network in eval mode: optik's ``PGD`` against a bare
  loop (random start, sign steps, projection, clamp), images/s.

The data are random tensors of CIFAR's shape: the benchmark measures the training and attack loops, not a
dataset. The bare loop keeps its batch on the device; optik's copies each ``uint8`` batch from host memory, as
``optik train`` does, so the comparison is conservative for optik. It needs CUDA and says so otherwise;
``--device cpu --steps 2 --warmup 1 --train-batch 32 --pgd-batch 32 --pgd-batches 1`` is a smoke test of the
script itself, not a measurement.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F


def _network(device):
    from optik.models.registry import create_classifier

    model = create_classifier("resnet18", classes=[str(i) for i in range(10)], in_channels=3, input_size=(32, 32),
                              net_input_size=32)
    return model.to(device).to(memory_format=torch.channels_last)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_training(device, *, steps: int, batch: int, warmup: int) -> float:
    model = _network(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    x = torch.rand(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=device)
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return steps * batch / (time.perf_counter() - start)


def optik_training(device, *, steps: int, batch: int, warmup: int) -> float:
    """optik's task and Trainer on an in-memory split on the device (optik.train's path without the data set)."""
    import lightning as L

    from optik.api import make_config
    from optik.data.handles import MemorySplit
    from optik.training.datamodule import SplitDataModule
    from optik.training.trainer import fit
    import optik.training.trainer as trainer_module

    n = (warmup + steps) * batch
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8)
    labels = torch.randint(0, 10, (n,))
    train = MemorySplit(images, torch.arange(n), labels, classes=[str(i) for i in range(10)])
    cfg = make_config(data="mnist5k", model="resnet18", epochs=1, batch_size=batch, precision="bf16-mixed",
                      accelerator="gpu" if device.type == "cuda" else "cpu", augment="none", val_fraction=0.0,
                      schedule="constant")
    times = {}

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, task, batch_, batch_idx):
            if batch_idx == warmup:
                _sync(device)
                times["start"] = time.perf_counter()

        def on_train_batch_end(self, trainer, task, outputs, batch_, batch_idx):
            if batch_idx == warmup + steps - 1:  # the last step; the end-of-epoch checkpoint is not timed
                _sync(device)
                times["end"] = time.perf_counter()

    build = trainer_module.build_trainer
    trainer_module.build_trainer = lambda *a, **k: build(*a, **{**k, "extra_callbacks": [Clock()]})
    try:
        with tempfile.TemporaryDirectory() as tmp:
            fit(_network("cpu"), SplitDataModule(train, None, batch_size=batch, seed=0), cfg, Path(tmp),
                checkpoint=None, progress=False)
    finally:
        trainer_module.build_trainer = build
    return steps * batch / (times["end"] - times["start"])


def bare_pgd(model, x, y, *, eps: float, steps: int) -> torch.Tensor:
    alpha = 2.5 * eps / steps
    adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        grad, = torch.autograd.grad(F.cross_entropy(model(adv), y), adv)
        adv = torch.min(torch.max(adv.detach() + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return adv


def attack_speed(device, *, batches: int, batch: int) -> dict:
    from optik.robustness import PGD

    model = _network(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    x = torch.rand(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    out = {}
    for name, run in (("bare", lambda: bare_pgd(model, x, y, eps=8 / 255, steps=10)),
                      ("optik", lambda: PGD(model, eps=8 / 255, steps=10, batch_size=batch)(x, y))):
        run()  # warm-up
        _sync(device)
        start = time.perf_counter()
        for _ in range(batches):
            run()
        _sync(device)
        out[name] = batches * batch / (time.perf_counter() - start)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--train-batch", type=int, default=512)
    p.add_argument("--pgd-batch", type=int, default=1024)
    p.add_argument("--pgd-batches", type=int, default=20)
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py needs a CUDA GPU; torch sees none on this machine")
    torch.backends.cudnn.benchmark = True
    report = {"benchmark": "gpu", "torch": str(torch.__version__), "machine": platform.machine(),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "none (smoke test)"}
    bare = bare_training(device, steps=args.steps, batch=args.train_batch, warmup=args.warmup)
    ours = optik_training(device, steps=args.steps, batch=args.train_batch, warmup=args.warmup)
    report[f"train_resnet18_32px_bs{args.train_batch}_bf16"] = {"bare_images_per_s": round(bare), "optik_images_per_s": round(ours),
                                                 "ratio": round(ours / bare, 3)}
    pgd = attack_speed(device, batches=args.pgd_batches, batch=args.pgd_batch)
    report[f"pgd10_bs{args.pgd_batch}"] = {"bare_images_per_s": round(pgd["bare"]), "optik_images_per_s": round(pgd["optik"]),
                              "ratio": round(pgd["optik"] / pgd["bare"], 3)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
