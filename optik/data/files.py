"""Image files decoded where they are needed: in ``DataLoader`` worker processes, resized there, never held at their
full resolution by the training process.

- :func:`image_header` reads a file's size and colour from its header, decoding no pixel (what the size and
  channels of a dataset are chosen from).
- :class:`ImageFiles` is a map-style dataset over file paths: item ``i`` is the ``uint8`` ``C x H x W`` image
  resized to the dataset's size (or a record of why it could not be read: training skips it and goes on).
- :func:`collate` stacks a batch and sets the unreadable items aside; :func:`decode_files` decodes a whole list
  into one tensor with worker processes (the in-memory path for data that fits).
"""
from __future__ import annotations

import collections
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from optik.core.errors import DataError
from optik.data.dataset import ImageDataset
from optik.data.dicom import DICOM_EXTENSIONS, dicom_header, is_dicom
from optik.data.folder import Listing, SkippedImagesWarning, decode_image, fit_image, list_folder, list_manifest

GREY_MODES = ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F")
HEADER_SAMPLE = 20_000  # headers read to choose a dataset's size and channels (all of them below this many files)


def default_workers() -> int:
    """Worker processes for decoding: the cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def image_header(path: str | os.PathLike) -> tuple[int, int, bool] | None:
    """``(height, width, grey)`` from the file's header (no pixel decoded); None if it is not a readable image.
    DICOM files are read by :func:`optik.data.dicom.dicom_header` (a ConfigError if pydicom is not installed)."""
    if Path(path).suffix.lower() in DICOM_EXTENSIONS:
        return dicom_header(path)
    try:
        with Image.open(path) as im:
            header = im.height, im.width, im.mode in GREY_MODES  # a palette image decodes to RGB
            tiff = im.format == "TIFF"
    except UnidentifiedImageError:  # DICOM without a .dcm name, or not an image
        return dicom_header(path) if is_dicom(path) else None
    except Exception:  # noqa: BLE001 - any failure means "not readable": decoding says why, later
        return None
    # a DICOM file whose 128-byte preamble is a TIFF (PS3.10 7.5) is decoded as DICOM (see decode_image)
    return dicom_header(path) if tiff and is_dicom(path) else header


def dataset_shape(files: Sequence[str | os.PathLike], *, image_size: int | None, seed: int = 0
                  ) -> tuple[int, tuple[int, int]]:
    """``(channels, (H, W))`` of a dataset of image files, from their headers: 1 channel if every image read is
    grey, else 3; the size ``image_size`` or, without it, the most common size. Above ``HEADER_SAMPLE`` files a
    seeded sample of that many headers decides (a rare RGB image among grey ones is then converted to grey)."""
    picked = list(files)
    if len(picked) > HEADER_SAMPLE:
        rng = np.random.default_rng(seed)
        picked = [picked[i] for i in rng.choice(len(picked), HEADER_SAMPLE, replace=False)]
    headers = [h for h in map(image_header, picked) if h is not None]
    if not headers:
        raise DataError(f"none of the {len(picked)} files read is an image optik can decode "
                        f"(first: {str(picked[0]) if picked else 'none'})")
    channels = 1 if all(grey for _, _, grey in headers) else 3
    if image_size:
        return channels, (int(image_size), int(image_size))
    return channels, collections.Counter((h, w) for h, w, _ in headers).most_common(1)[0][0]


@dataclass(frozen=True)
class Unreadable:
    """An item that could not be decoded: its index and why."""

    index: int
    reason: str


class ImageFiles(torch.utils.data.Dataset):
    """Image files as ``uint8`` ``C x H x W`` tensors of one size, decoded and resized when an item is asked for
    (in a ``DataLoader`` worker). Item ``i`` is ``(image, label, i)``, or :class:`Unreadable` for a file that cannot
    be decoded (corrupt, truncated, over the pixel limit): :func:`collate` leaves those out of the batch.
    ``dicom_window = (center, width)`` replaces DICOM files' own window (see :mod:`optik.data.dicom`)."""

    def __init__(self, files: Sequence[str | os.PathLike], labels: torch.Tensor, *, size: tuple[int, int],
                 channels: int, dicom_window: tuple[float, float] | None = None):
        self.files = [str(f) for f in files]
        self.labels = labels
        self.size, self.channels = (int(size[0]), int(size[1])), channels
        self.dicom_window = dicom_window

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int):
        try:
            a = decode_image(self.files[i], draft=self.size, dicom_window=self.dicom_window)
        except DataError as e:
            return Unreadable(int(i), str(e))
        return torch.from_numpy(fit_image(a, self.size, self.channels)), self.labels[i], int(i)


def collate(items: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[Unreadable]]:
    """``(uint8 images B x C x H x W, labels, indices, unreadable)`` from :class:`ImageFiles` items."""
    good = [it for it in items if not isinstance(it, Unreadable)]
    bad = [it for it in items if isinstance(it, Unreadable)]
    if not good:
        return torch.zeros(0, dtype=torch.uint8), torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long), bad
    images = torch.stack([g[0] for g in good])
    labels = torch.stack([torch.as_tensor(g[1]) for g in good]).long()
    return images, labels, torch.tensor([g[2] for g in good]), bad


def decode_files(files: Sequence[str | os.PathLike], *, size: tuple[int, int], channels: int,
                 workers: int | None = None, batch_size: int = 64, dicom_window: tuple[float, float] | None = None,
                 ) -> tuple[torch.Tensor, list[int], list[str]]:
    """Decode every file into one ``uint8`` ``N x C x H x W`` tensor (worker processes decode and resize; the
    result is allocated once, at the target size). Returns the images of the readable files, their indices, and
    the reasons the others were not read. ``dicom_window``: as in :class:`ImageFiles`."""
    workers = default_workers() if workers is None else workers
    data = ImageFiles(files, torch.zeros(len(files), dtype=torch.long), size=size, channels=channels,
                      dicom_window=dicom_window)
    out = torch.empty((len(files), channels, *size), dtype=torch.uint8)
    ok = torch.zeros(len(files), dtype=torch.bool)
    failures: list[str] = []
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=workers if len(files) > 256 else 0,
                                         collate_fn=collate)
    for images, _, idx, bad in loader:
        out[idx] = images
        ok[idx] = True
        failures += [b.reason for b in bad]
    keep = ok.nonzero().flatten()
    return (out if bool(ok.all()) else out[keep]), keep.tolist(), failures


def check_listing(listing: Listing, *, strict: bool) -> None:
    """With ``strict``, files left out of a listing are an error; otherwise they and the repeats dropped are named in
    one warning."""
    if listing.skipped and strict:
        raise DataError(f"{len(listing.skipped)} file(s) in {listing.name!r} cannot be read (strict mode):\n  "
                        + "\n  ".join(listing.skipped))
    warn_skipped(listing.skipped + listing.notes)


def warn_skipped(lines: Sequence[str]) -> None:
    if lines:
        warnings.warn(f"skipped {len(lines)} file(s):\n  " + "\n  ".join(lines), SkippedImagesWarning, stacklevel=3)


def load_listing(listing: Listing, *, image_size: int | None = None, strict: bool = False,
                 workers: int | None = None, dicom_window: tuple[float, float] | None = None) -> ImageDataset:
    """Decode a listing into one ``uint8`` tensor (the in-memory path): size and channels from the headers, each
    image decoded and resized in a worker process, unreadable files skipped with one warning (with ``strict``, an
    error). ``dicom_window``: as in :class:`ImageFiles`."""
    if listing.skipped and strict:
        check_listing(listing, strict=True)
    channels, size = dataset_shape(listing.files, image_size=image_size)
    images, kept, failures = decode_files(listing.files, size=size, channels=channels, workers=workers,
                                          dicom_window=dicom_window)
    if failures and strict:
        raise DataError(f"{len(failures)} unreadable image(s) (strict mode):\n  " + "\n  ".join(failures))
    warn_skipped(listing.skipped + listing.notes + failures)
    classes = listing.classes
    empty = [c for c in classes if c not in {listing.labels[i] for i in kept}]
    if empty:
        raise DataError(f"class(es) {', '.join(repr(e) for e in empty)} in {listing.name!r} hold no readable "
                        f"images; add images or remove them")
    labels = listing.label_indices()[kept]
    splits = {}
    if listing.split_of is not None:  # the readable files' positions in each split folder
        kept_split = np.array([listing.split_of[i] for i in kept])
        splits = {s: torch.from_numpy(np.flatnonzero(kept_split == s)).long() for s in ("train", "val", "test")
                  if (kept_split == s).any()}
    return ImageDataset(images, labels, classes, listing.name, splits, [str(listing.files[i]) for i in kept],
                        dict(listing.meta))


def load_folder(root: str | os.PathLike, *, image_size: int | None = None, strict: bool = False) -> ImageDataset:
    """Decode a class-per-folder tree into memory (see :func:`~optik.data.folder.list_folder`): images resized in worker processes,
    never held at full resolution; unreadable files skipped with one warning (an error with ``strict``)."""
    return load_listing(list_folder(root), image_size=image_size, strict=strict)


def load_manifest(path: str | os.PathLike, *, image_size: int | None = None, strict: bool = False) -> ImageDataset:
    """Decode the images a CSV manifest lists (header ``path,label``; paths relative to the CSV's folder, or
    absolute) into memory, as :func:`load_folder` does a folder."""
    return load_listing(list_manifest(path), image_size=image_size, strict=strict)


__all__ = ["check_listing", "load_folder", "load_listing", "load_manifest", "warn_skipped", "ImageFiles", "Unreadable", "collate", "dataset_shape", "decode_files", "default_workers", "image_header"]
