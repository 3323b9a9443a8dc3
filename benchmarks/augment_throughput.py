"""Augmentation throughput: optik's batched ImageDataGenerator vs Keras, Kornia and Albumentations, one run.

The seed pipeline of issue #3 (Keras' classic example): rotation 40, width/height shift 0.2, shear 0.2,
zoom 0.2, horizontal flip, fill nearest, brightness [0.8, 1.2], rescale 1/255.

    pip install -e ".[dev,bench]"; python benchmarks/augment_throughput.py [--threads 2] [--repeats 5]

- 1024 images 32x32x3: optik (one batched call) vs Keras' ImageDataGenerator (`flow`, per-image SciPy) vs
  Kornia (`AugmentationSequential` on the same batch). Bars: >= 40,000 images/s, >= 20x Keras, >= 1.3x Kornia.
- 256 images 224x224x3: optik vs Albumentations' per-image OpenCV pipeline. Bar: >= Albumentations.
Each figure is the best of ``--repeats`` timed runs after one warm-up, all in this process.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("KERAS_BACKEND", "torch")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from optik.augment.generator import AugmentConfig, augment  # noqa: E402
from optik.core.seed import generator  # noqa: E402

SEED = dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, shear_range=0.2, zoom_range=0.2,
            horizontal_flip=True, fill_mode="nearest", brightness_range=(0.8, 1.2), rescale=1 / 255)


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def optik_fn(x: torch.Tensor):
    cfg, g = AugmentConfig(**SEED), generator(0, "bench")
    return lambda: augment(x, cfg, generator=g)


def keras_fn(x_nhwc: np.ndarray):
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    idg = ImageDataGenerator(**SEED)
    return lambda: next(idg.flow(x_nhwc, batch_size=len(x_nhwc), shuffle=False, seed=0))


def kornia_fn(x: torch.Tensor):
    import kornia.augmentation as K

    pipe = K.AugmentationSequential(
        K.RandomAffine(degrees=40, translate=(0.2, 0.2), scale=(0.8, 1.2), shear=0.2, padding_mode="border", p=1.0),
        K.RandomHorizontalFlip(),
        K.RandomBrightness(brightness=(0.8, 1.2), p=1.0),
    )
    return lambda: pipe(x) * (1 / 255)


def albumentations_fn(x_nhwc: np.ndarray):
    import albumentations as A
    import cv2

    pipe = A.Compose([
        A.Affine(rotate=(-40, 40), translate_percent=(-0.2, 0.2), shear=(-0.2, 0.2), scale=(0.8, 1.2),
                 border_mode=cv2.BORDER_REPLICATE, p=1.0),
        A.HorizontalFlip(p=0.5),
        A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.0, brightness_by_max=False, p=1.0),
    ])
    return lambda: [pipe(image=im)["image"].astype(np.float32) * (1 / 255) for im in x_nhwc]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import cv2

        cv2.setNumThreads(args.threads)
    except ImportError:
        pass
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, (1024, 32, 32, 3), dtype=np.uint8)
    large = rng.integers(0, 256, (256, 224, 224, 3), dtype=np.uint8)
    small_t = torch.from_numpy(small).permute(0, 3, 1, 2).float().contiguous()  # 0..255, as Keras gets it
    large_t = torch.from_numpy(large).permute(0, 3, 1, 2).float().contiguous()

    t = {"optik_32": best_of(optik_fn(small_t), args.repeats)}
    t["keras_32"] = best_of(keras_fn(small.astype(np.float32)), max(1, args.repeats // 2))
    t["kornia_32"] = best_of(kornia_fn(small_t), args.repeats)
    t["optik_224"] = best_of(optik_fn(large_t), args.repeats)
    t["albumentations_224"] = best_of(albumentations_fn(large), args.repeats)
    ips = {k: round((1024 if k.endswith("_32") else 256) / v, 1) for k, v in t.items()}
    print(json.dumps({
        "benchmark": "augment_throughput", "pipeline": {k: str(v) for k, v in SEED.items()},
        "threads": args.threads, "machine": platform.machine(), "torch": str(torch.__version__),
        "images_per_s": ips,
        "ratios": {
            "optik_over_keras_32": round(ips["optik_32"] / ips["keras_32"], 2),
            "optik_over_kornia_32": round(ips["optik_32"] / ips["kornia_32"], 2),
            "optik_over_albumentations_224": round(ips["optik_224"] / ips["albumentations_224"], 2),
        },
    }, indent=2))


if __name__ == "__main__":
    main()
