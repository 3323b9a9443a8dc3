"""Synthetic image folders for the data benchmarks, written where you say (a temporary folder), never committed.

    python benchmarks/make_images.py OUT --n 3000 --size 1024 --grey --format png

``OUT/class_<k>/<i>.<ext>``, 10 classes. Each image is a smooth pattern whose frequency and orientation depend
on its class, plus noise: it compresses like a photograph or an X-ray, not like random bytes or a flat field, and a
network can learn the classes. Written by worker processes; a folder already complete is kept as it is.
"""
from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = 10


def _write(task: tuple[str, int, int, int, bool, str]) -> None:
    path, i, k, size, grey, fmt = task
    rng = np.random.default_rng(i)
    y, x = np.mgrid[0:size, 0:size] / size
    angle, freq = np.pi * k / CLASSES, 2 + k
    wave = np.sin(2 * np.pi * freq * (x * np.cos(angle) + y * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    base = 128 + 80 * wave + rng.normal(0, 12, (size, size))
    if grey:
        pixels = np.clip(base, 0, 255).astype(np.uint8)
    else:
        tint = rng.uniform(0.7, 1.3, 3)
        pixels = np.clip(base[..., None] * tint, 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, **({"quality": 90} if fmt == "jpeg" else {"compress_level": 1}))


def make_folder(out: str | os.PathLike, *, n: int, size: int, grey: bool, fmt: str = "png") -> Path:
    """Write ``n`` images (``n / 10`` per class) of ``size x size`` into ``out``; return it. A folder that already
    holds ``n`` such images is kept."""
    out = Path(out)
    ext = "jpg" if fmt == "jpeg" else "png"
    if out.is_dir() and sum(1 for _ in out.rglob(f"*.{ext}")) == n:
        return out
    tasks = []
    for i in range(n):
        k = i % CLASSES
        (out / f"class_{k}").mkdir(parents=True, exist_ok=True)
        tasks.append((str(out / f"class_{k}" / f"{i:06d}.{ext}"), i, k, size, grey, fmt))
    with ProcessPoolExecutor(max_workers=os.cpu_count()) as pool:
        list(pool.map(_write, tasks, chunksize=64))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out")
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--grey", action="store_true")
    p.add_argument("--format", choices=("png", "jpeg"), default="png")
    args = p.parse_args()
    print(make_folder(args.out, n=args.n, size=args.size, grey=args.grey, fmt=args.format))


if __name__ == "__main__":
    main()
