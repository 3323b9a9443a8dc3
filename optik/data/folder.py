"""Image trees (one folder per class) and CSV manifests (``path,label``), decoded once into memory."""
from __future__ import annotations

import collections
import csv
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from optik.core.errors import DataError
from optik.data.dataset import ImageDataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SPLIT_NAMES = ("train", "val", "test")
Image.MAX_IMAGE_PIXELS = 50_000_000  # refuse decompression bombs (PIL raises above 2x this)


class SkippedImagesWarning(UserWarning):
    """Some files were not loaded; the message lists each file and why."""


def decode_image(path: str | os.PathLike) -> np.ndarray:
    """Decode one file into ``uint8`` ``H x W`` (grayscale) or ``H x W x 3`` (colour).

    16-bit images are scaled to 8 bits (``v / 257``); an alpha channel is dropped; palettes are expanded.
    Raises a DataError naming the file if it is not a readable image (corrupt, truncated, not an image).
    """
    try:
        with Image.open(path) as im:
            im.load()  # forces a full decode: a truncated file fails here, not later
            return _to_uint8(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None


def _to_uint8(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        return np.clip(np.round(a / 257.0), 0, 255).astype(np.uint8)
    if im.mode == "F":
        a = np.asarray(im, dtype=np.float64)
        scale = 255.0 if a.max(initial=0) <= 1.0 else 1.0
        return np.clip(np.round(a * scale), 0, 255).astype(np.uint8)
    if im.mode in ("1", "L", "LA"):
        return np.asarray(im.convert("L"))
    if im.mode == "P":
        im = im.convert("RGBA")
    return np.asarray(im.convert("RGB"))


def _resize(a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if a.shape[:2] == size:
        return a
    return np.asarray(Image.fromarray(a).resize((size[1], size[0]), Image.BILINEAR, reducing_gap=None))


def stack_images(arrays: list[np.ndarray], *, size: tuple[int, int] | None = None, channels: int | None = None,
                 ) -> torch.Tensor:
    """Stack decoded images into ``uint8`` ``N x C x H x W``: one size (resized), one channel count.

    Args:
        size: target ``(H, W)``; default the most common size among ``arrays``.
        channels: 1 or 3; default 1 if every image is grayscale, else 3 (grayscale replicated).
    """
    if size is None:
        size = collections.Counter(a.shape[:2] for a in arrays).most_common(1)[0][0]
    if channels is None:
        channels = 1 if all(a.ndim == 2 for a in arrays) else 3
    out = np.empty((len(arrays), channels, *size), dtype=np.uint8)
    for i, a in enumerate(arrays):
        a = _resize(a, size)
        if a.ndim == 2:
            a = a[..., None]
        if a.shape[2] != channels:
            a = np.repeat(a, 3, axis=2) if channels == 3 else np.asarray(Image.fromarray(a).convert("L"))[..., None]
        out[i] = a.transpose(2, 0, 1)
    return torch.from_numpy(out)


def _decode_all(paths: list[Path], strict: bool) -> tuple[list[np.ndarray | None], list[str]]:
    """Decode in threads (PIL releases the GIL while decoding); collect every failure before deciding."""
    def one(p: Path):
        try:
            return decode_image(p), None
        except DataError as e:
            return None, str(e)

    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
        results = list(pool.map(one, paths))
    failures = [err for _, err in results if err]
    if failures and strict:
        raise DataError(f"{len(failures)} unreadable image(s) (strict mode):\n  " + "\n  ".join(failures))
    return [a for a, _ in results], failures


def _warn_skipped(skipped: list[str]) -> None:
    if skipped:
        warnings.warn(f"skipped {len(skipped)} file(s):\n  " + "\n  ".join(skipped), SkippedImagesWarning,
                      stacklevel=3)


def _scan_classes(root: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """Class folder -> image files; non-image files are reported, hidden files ignored."""
    classes, skipped = {}, []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = []
        for f in sorted(d.rglob("*")):
            if f.is_dir() or any(part.startswith(".") for part in f.relative_to(root).parts):
                continue
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(f)
            else:
                skipped.append(f"{f}: not an image file (expected one of {', '.join(IMAGE_EXTENSIONS)})")
        classes[d.name] = files
    return classes, skipped


def load_folder(root: str | os.PathLike, *, image_size: int | None = None, strict: bool = False) -> ImageDataset:
    """Load ``root/<class>/*.png`` (or ``root/{train,val,test}/<class>/...`` with predefined splits).

    Args:
        root: the folder; each sub-folder is a class, named by its folder.
        image_size: resize every image to ``image_size x image_size``; default the most common size.
        strict: raise on the first unreadable file instead of skipping it with a warning.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"expected a folder of class folders, got {str(root)!r}, which does not exist")
    subdirs = {p.name for p in root.iterdir() if p.is_dir()}
    split_dirs = [s for s in SPLIT_NAMES if s in subdirs] if {"train", "test"} <= subdirs else []
    parts = [(s, root / s) for s in split_dirs] or [("", root)]

    scanned = {}
    skipped: list[str] = []
    for split, folder in parts:
        classes, bad = _scan_classes(folder)
        scanned[split] = classes
        skipped += bad
    class_names = sorted(set().union(*[set(c) for c in scanned.values()]))
    if len(class_names) < 2:
        raise DataError(
            f"expected at least 2 class folders in {str(root)!r}, got {len(class_names)} ({class_names}); "
            f"a classifier needs one sub-folder of images per class"
        )
    paths, labels, split_of = [], [], []
    for split, classes in scanned.items():
        for name, files in classes.items():
            paths += files
            labels += [class_names.index(name)] * len(files)
            split_of += [split] * len(files)
    arrays, failures = _decode_all(paths, strict)
    _warn_skipped(skipped + failures)
    keep = [i for i, a in enumerate(arrays) if a is not None]
    counts = collections.Counter(labels[i] for i in keep)
    empty = [class_names[c] for c in range(len(class_names)) if counts[c] == 0]
    if empty:
        raise DataError(
            f"class folder(s) {', '.join(repr(e) for e in empty)} in {str(root)!r} hold no readable images; "
            f"add images or remove the folder(s)"
        )
    size = (image_size, image_size) if image_size else None
    images = stack_images([arrays[i] for i in keep], size=size)
    splits = {}
    if split_dirs:
        kept_split = np.array([split_of[i] for i in keep])
        splits = {s: torch.from_numpy(np.flatnonzero(kept_split == s)).long() for s in split_dirs}
    return ImageDataset(images, torch.tensor([labels[i] for i in keep]), class_names, str(root), splits,
                        [str(paths[i]) for i in keep])


def load_manifest(path: str | os.PathLike, *, image_size: int | None = None, strict: bool = False) -> ImageDataset:
    """Load a CSV manifest with a header ``path,label`` (paths relative to the CSV's folder)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"expected a CSV manifest, got {str(path)!r}, which does not exist")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"path", "label"} <= set(rows[0]):
        got = list(rows[0]) if rows else "no rows"
        raise DataError(f"expected CSV columns 'path,label' in {str(path)!r}, got {got}")
    files = [(path.parent / r["path"]).resolve() for r in rows]
    names = [r["label"].strip() for r in rows]
    missing = [f"{f}: file not found" for f in files if not f.is_file()]
    if missing and strict:
        raise DataError(f"{len(missing)} file(s) in {str(path)!r} not found:\n  " + "\n  ".join(missing))
    present = [i for i, f in enumerate(files) if f.is_file()]
    arrays, failures = _decode_all([files[i] for i in present], strict)
    _warn_skipped(missing + failures)
    keep = [present[j] for j, a in enumerate(arrays) if a is not None]
    class_names = sorted({names[i] for i in keep})
    if len(class_names) < 2:
        raise DataError(f"expected at least 2 labels in {str(path)!r}, got {class_names}")
    kept_arrays = [a for a in arrays if a is not None]
    size = (image_size, image_size) if image_size else None
    labels = torch.tensor([class_names.index(names[i]) for i in keep])
    return ImageDataset(stack_images(kept_arrays, size=size), labels, class_names, str(path),
                        sources=[str(files[i]) for i in keep])
