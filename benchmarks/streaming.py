"""Real data at real size (issue #19): memory, throughput and startup of optik's data handles on synthetic folders.

    python benchmarks/streaming.py all [--root DIR] [--keep]
    python benchmarks/streaming.py memory-png | memory-jpeg | speed | shards | startup

Fixtures (benchmarks/make_images.py) are written to a temporary folder (or --root), never to the repository:
3,000 grey 1024 x 1024 PNGs and 20,000 RGB 224 x 224 JPEGs, 10 classes.

- memory-png: one training epoch at --image-size 128 on the 3,000 PNGs; peak PSS of the whole process tree (main
  process and its DataLoader workers), sampled every 50 ms. Bar <= 2.0 GiB.
- memory-jpeg: one --stream epoch on the first 10,000 and on all 20,000 JPEGs; the two peaks differ by <= 300 MiB
  and both stay <= 2.5 GiB.
- speed: images/s of a streamed training epoch on 10,000 JPEGs against torchvision's ImageFolder + DataLoader with
  the same workers, model, batch size and optimizer, in one run. Bar >= 0.90x.
- shards: an epoch from `optik prepare` shards at 128 px against streaming the 1024-pixel PNGs at 128 px. Bar >= 3x.
- startup: seconds from optik.train() to the first training step on the 20,000 JPEGs. Bar <= 30 s.

The model is deliberately small (`conv(16,k=5,s=4) relu conv(32,k=3,s=2) relu gap fc`) so that the data pipeline,
not the network, sets the pace; both sides of every comparison train the same one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from make_images import make_folder  # noqa: E402

MODEL = "conv(16,k=5,s=4) relu conv(32,k=3,s=2) relu gap fc"
GIB = 2 ** 30


# ------------------------------------------------------------------------------------------------ memory
def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
    except OSError:
        pass
    return out


def tree_pss(pid: int) -> int:
    """PSS in bytes of ``pid`` and all its descendants (shared pages counted once, in shares)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except OSError:
            continue
        todo += _children(p)
    return total


class PeakMemory:
    """Samples the process tree's PSS every ``interval`` seconds in a thread; ``peak`` after ``stop``."""

    def __init__(self, interval: float = 0.05):
        self.interval, self.peak, self._stop = interval, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_pss(os.getpid()))
            time.sleep(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_pss(os.getpid()))


def _train_epoch(data: str, out: Path, **kw) -> dict:
    import optik

    start = time.perf_counter()
    with PeakMemory() as mem:
        optik.train(data=data, model=MODEL, epochs=1, batch_size=64, augment="none", out=out, overwrite=True,
                    progress=False, **kw)
    return {"peak_pss_gib": round(mem.peak / GIB, 3), "seconds": round(time.perf_counter() - start, 1)}


def memory_png(root: Path) -> dict:
    pngs = make_folder(root / "png1024", n=3000, size=1024, grey=True, fmt="png")
    r = _train_epoch(str(pngs), root / "runs" / "png", image_size=128)
    return {"bar": "<= 2.0 GiB", **r, "pass": r["peak_pss_gib"] <= 2.0}


def memory_jpeg(root: Path) -> dict:
    small = make_folder(root / "jpg10k", n=10_000, size=224, grey=False, fmt="jpeg")
    large = make_folder(root / "jpg20k", n=20_000, size=224, grey=False, fmt="jpeg")
    a = _train_epoch(str(small), root / "runs" / "j10", stream=True)
    b = _train_epoch(str(large), root / "runs" / "j20", stream=True)
    diff = abs(b["peak_pss_gib"] - a["peak_pss_gib"]) * 1024
    return {"bar": "peaks differ <= 300 MiB, both <= 2.5 GiB", "10k": a, "20k": b, "difference_mib": round(diff),
            "pass": diff <= 300 and max(a["peak_pss_gib"], b["peak_pss_gib"]) <= 2.5}


# ------------------------------------------------------------------------------------------------ speed
def _bare_imagefolder(folder: Path, *, workers: int, batch_size: int, seconds_limit: float | None = None) -> dict:
    """torchvision's ImageFolder + DataLoader feeding the same model and optimizer: images/s over one epoch."""
    import torch.nn.functional as F
    from torchvision.datasets import ImageFolder
    from torchvision.transforms import PILToTensor

    from optik.models.registry import create_classifier

    ds = ImageFolder(str(folder), transform=PILToTensor())
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         drop_last=True, prefetch_factor=4)
    model = create_classifier(MODEL, classes=ds.classes, in_channels=3, input_size=(224, 224),
                              mean=[0.5] * 3, std=[0.25] * 3).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    start, n = None, 0
    for x, y in loader:  # timed from the first batch's arrival, as the optik side is
        start = start or time.perf_counter()
        x = x.float().div_(255).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(y)
    seconds = time.perf_counter() - start
    return {"images": n, "seconds": round(seconds, 1), "images_per_s": round(n / seconds, 1)}


class EpochClock:
    """A Lightning callback timing the training batches of the first epoch (no validation, no checkpoints)."""

    def __new__(cls):
        import lightning as L

        class _Clock(L.Callback):
            def __init__(self):
                self.first = self.last = None
                self.images = 0

            def on_train_batch_start(self, trainer, task, batch, batch_idx):
                if self.first is None:
                    self.first = time.perf_counter()

            def on_train_batch_end(self, trainer, task, outputs, batch, batch_idx):
                self.images += len(batch[1])
                self.last = time.perf_counter()

        return _Clock()


def _optik_epoch(data: str, *, workers: int, batch_size: int, stream: bool, image_size: int | None = None) -> dict:
    """optik's training loop over a split handle (the path optik train takes), timed from the first batch to the
    last of one epoch, validation left out as on the other side."""
    from optik.api import make_config, open_run_data
    from optik.data.handles import channel_stats
    from optik.models.registry import create_classifier
    from optik.training.datamodule import SplitDataModule
    from optik.training.trainer import fit

    cfg = make_config(data=data, model=MODEL, epochs=1, batch_size=batch_size, augment="none", stream=stream,
                      workers=workers, val_fraction=0.0, schedule="constant", lr=0.01, image_size=image_size)
    handle = open_run_data(cfg)
    mean, std = channel_stats(handle.splits["train"])
    model = create_classifier(MODEL, classes=handle.classes, in_channels=handle.channels,
                              input_size=handle.image_size, mean=mean, std=std)
    clock = EpochClock()
    import optik.training.trainer as trainer_module

    with tempfile.TemporaryDirectory() as tmp:
        build = trainer_module.build_trainer

        def with_clock(*a, **k):
            return build(*a, **{**k, "extra_callbacks": [*k.get("extra_callbacks", ()), clock]})

        trainer_module.build_trainer = with_clock
        try:
            fit(model, SplitDataModule(handle.splits["train"], None, batch_size=batch_size, seed=0, workers=workers),
                cfg, Path(tmp), checkpoint=None, progress=False)
        finally:
            trainer_module.build_trainer = build
    seconds = clock.last - clock.first
    return {"images": clock.images, "seconds": round(seconds, 1), "images_per_s": round(clock.images / seconds, 1),
            "source": handle.source, "image_size": list(handle.image_size)}


def speed(root: Path, *, workers: int) -> dict:
    jpegs = make_folder(root / "jpg10k", n=10_000, size=224, grey=False, fmt="jpeg")
    bare = _bare_imagefolder(jpegs, workers=workers, batch_size=64)
    ours = _optik_epoch(str(jpegs), workers=workers, batch_size=64, stream=True)
    ratio = ours["images_per_s"] / bare["images_per_s"]
    return {"bar": ">= 0.90x", "workers": workers, "imagefolder": bare, "optik_stream": ours,
            "ratio": round(ratio, 3), "pass": ratio >= 0.90}


def shards(root: Path, *, workers: int) -> dict:
    import optik

    pngs = make_folder(root / "png1024", n=3000, size=1024, grey=True, fmt="png")
    start = time.perf_counter()
    prepared = optik.prepare(str(pngs), out=root / "png1024-shards128", image_size=128, workers=workers,
                             progress=False)
    prepare_s = time.perf_counter() - start
    stream = _optik_epoch(str(pngs), workers=workers, batch_size=64, stream=True, image_size=128)
    from_shards = _optik_epoch(str(prepared), workers=workers, batch_size=64, stream=True)
    ratio = from_shards["images_per_s"] / stream["images_per_s"]
    return {"bar": ">= 3x", "prepare_seconds": round(prepare_s, 1), "stream_png": stream, "shards": from_shards,
            "ratio": round(ratio, 2), "pass": ratio >= 3}


def startup(root: Path, *, workers: int) -> dict:
    import lightning as L

    import optik
    import optik.training.trainer as trainer_module

    jpegs = make_folder(root / "jpg20k", n=20_000, size=224, grey=False, fmt="jpeg")
    first = {}

    class FirstStep(L.Callback):
        def on_train_batch_start(self, trainer, task, batch, batch_idx):
            if "t" not in first:
                first["t"] = time.perf_counter()
                raise KeyboardInterrupt  # stop right there: only the time to the first step is measured

    build = trainer_module.build_trainer

    def with_probe(*a, **k):
        return build(*a, **{**k, "extra_callbacks": [*k.get("extra_callbacks", ()), FirstStep()]})

    trainer_module.build_trainer = with_probe
    start = time.perf_counter()
    try:
        optik.train(data=str(jpegs), model=MODEL, epochs=1, augment="none", stream=True, workers=workers,
                    out=root / "runs" / "startup", overwrite=True, progress=False)
    except BaseException:  # noqa: BLE001 - the probe's interrupt
        pass
    finally:
        trainer_module.build_trainer = build
    seconds = first["t"] - start
    return {"bar": "<= 30 s", "seconds_to_first_step": round(seconds, 1), "pass": seconds <= 30}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("all", "memory-png", "memory-jpeg", "speed", "shards", "startup"))
    p.add_argument("--root", help="where the synthetic folders go (default: a temporary folder, removed)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--keep", action="store_true", help="keep the fixtures (with --root)")
    args = p.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    root = Path(args.root or tempfile.mkdtemp(prefix="optik-bench-"))
    report = {"benchmark": "streaming", "machine": platform.machine(), "cores": os.cpu_count(),
              "torch": str(torch.__version__), "workers": args.workers}
    steps = {"memory-png": lambda: memory_png(root), "memory-jpeg": lambda: memory_jpeg(root),
             "speed": lambda: speed(root, workers=args.workers), "shards": lambda: shards(root, workers=args.workers),
             "startup": lambda: startup(root, workers=args.workers)}
    try:
        for name, step in steps.items():
            if args.what in ("all", name):
                report[name] = step()
                print(json.dumps({name: report[name]}), flush=True)
    finally:
        if not (args.root and args.keep):
            shutil.rmtree(root, ignore_errors=True)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
