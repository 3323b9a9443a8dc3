"""Image trees (one folder per class) and CSV manifests (``path,label``): listed without decoding, decoded one file at a
time (see :mod:`optik.data.files` for the loaders)."""
from __future__ import annotations

import collections
import csv
import hashlib
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from optik.core.errors import DataError, OptikError, short
from optik.core.images import MAX_IMAGE_PIXELS
from optik.core.io import path_kind
from optik.data.dicom import DICOM_EXTENSIONS, decode_dicom, is_dicom

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp") + DICOM_EXTENSIONS
SPLIT_NAMES = ("train", "val", "test")
Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS  # PIL's own check (it raises only above 2x this; decode_image checks 1x)
# PIL only warns between 1x and 2x its limit; decode_image refuses those images itself, with the file's name (a
# catch_warnings around Image.open would not hold: images are decoded in threads and worker processes)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class SkippedImagesWarning(UserWarning):
    """Some files were not loaded; the message lists each file and why."""


def decode_image(path: str | os.PathLike, *, draft: tuple[int, int] | None = None,
                 dicom_window: tuple[float, float] | None = None) -> np.ndarray:
    """Decode one file into ``uint8`` ``H x W`` (grayscale) or ``H x W x 3`` (colour).

    16-bit images are scaled to 8 bits (``v / 257``); an alpha channel is dropped; palettes are expanded.
    ``draft = (H, W)``: the image will be resized to about this size, so a JPEG may be decoded at a reduced scale
    (no smaller than it; JPEG's DCT scaling, many times faster for large photos).
    DICOM files (a ``.dcm`` / ``.dicom`` name, or the ``DICM`` marker in a file PIL does not know or reads as a
    TIFF) go to :func:`optik.data.dicom.decode_dicom`, with ``dicom_window = (center, width)`` replacing their
    own window.
    Raises a DataError naming the file if it is not a readable image (corrupt, truncated, not an image).
    """
    if Path(path).suffix.lower() in DICOM_EXTENSIONS:
        return decode_dicom(path, window=dicom_window)
    try:
        with Image.open(path) as im:
            if im.format == "TIFF" and is_dicom(path):  # DICOM whose 128-byte preamble is a TIFF (PS3.10 7.5)
                return decode_dicom(path, window=dicom_window)
            if draft is not None and im.format == "JPEG":
                im.draft(im.mode, (draft[1], draft[0]))
            pixels = im.width * im.height  # read from the header: nothing decoded yet
            if pixels > MAX_IMAGE_PIXELS:
                raise DataError(f"{path}: {im.width} x {im.height} pixels ({pixels / 1e6:.0f} MP) is over optik's "
                                f"limit of {MAX_IMAGE_PIXELS / 1e6:.0f} MP; resize it first")
            im.load()  # forces a full decode: a truncated file fails here, not later
            return _to_uint8(im)
    except OptikError:  # the file's own error (DataError), or no pydicom (ConfigError): not PIL's
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        if not (isinstance(e, UnidentifiedImageError) and is_dicom(path)):
            raise DataError(f"{path}: not a readable image ({type(e).__name__}: {e})") from None
    # only a file PIL does not know that carries the DICM marker gets here (DICOM files often have no suffix)
    return decode_dicom(path, window=dicom_window)


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


def fit_image(a: np.ndarray, size: tuple[int, int], channels: int) -> np.ndarray:
    """A decoded ``uint8`` image (``H x W`` or ``H x W x 3``) at ``size = (H, W)`` with ``channels`` (grey repeated
    to RGB, RGB to grey by luminance), as ``C x H x W``. Resizing is PIL's antialiased bilinear."""
    if a.shape[:2] != tuple(size):
        a = np.asarray(Image.fromarray(a).resize((size[1], size[0]), Image.BILINEAR, reducing_gap=None))
    if a.ndim == 2:
        a = a[..., None]
    if a.shape[2] != channels:
        a = np.repeat(a, 3, axis=2) if channels == 3 else np.asarray(Image.fromarray(a).convert("L"))[..., None]
    out = np.ascontiguousarray(a.transpose(2, 0, 1))
    return out if out.flags.writeable else out.copy()  # a view of PIL's read-only buffer: torch wants to own it


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
        out[i] = fit_image(a, size, channels)
    return torch.from_numpy(out)


def _scan_classes(root: Path) -> tuple[dict[str, list[Path]], list[str]]:
    """Class folder -> image files. Whatever is left out is reported with what it is: non-image files, broken
    symbolic links (to a class folder or a file), FIFOs and devices; hidden files are ignored."""
    classes, skipped = {}, []
    for d in sorted(p for p in root.iterdir() if not p.name.startswith(".")):
        if not d.is_dir():
            if d.is_symlink() or not d.is_file():  # a broken link, a FIFO, ... where a class folder could be
                skipped.append(f"{d}: {path_kind(d)}; expected a class folder")
            continue
        files = []
        for f in sorted(d.rglob("*")):
            if any(part.startswith(".") for part in f.relative_to(root).parts) or f.is_dir():
                continue
            if not f.is_file():
                skipped.append(f"{f}: {path_kind(f)}")
            elif f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(f)
            else:
                skipped.append(f"{f}: not an image file (expected one of {', '.join(IMAGE_EXTENSIONS)})")
        classes[d.name] = files
    return classes, skipped


def _duplicates(files: list[Path], labels: list[str], where: str, sources: list[str]) -> tuple[list[int], list[str]]:
    """Rows that name a file already listed (by its resolved path): dropped with a note when the labels agree,
    an error listing them when they do not (one image would train as two classes, or land in two splits).
    Returns the rows to keep and the notes."""
    first: dict[Path, int] = {}
    keep, notes, conflicts = [], [], []
    for i, f in enumerate(files):
        j = first.setdefault(f, i)
        if j == i:
            keep.append(i)
        elif labels[i] == labels[j]:
            notes.append(f"{sources[i]}: {f} is listed again (as {sources[j]}) with the same label; the repeat is "
                         f"dropped")
        else:
            conflicts.append(f"{f}: {labels[j]!r} ({sources[j]}) and {labels[i]!r} ({sources[i]})")
    if conflicts:
        raise DataError(f"{where} lists {len(conflicts)} file(s) twice with different labels; give each file one "
                        f"label:\n  " + "\n  ".join(conflicts[:20]) + ("\n  ..." if len(conflicts) > 20 else ""))
    return keep, notes


@dataclass
class Listing:
    """A folder tree or manifest as a list of files and their class names, before any image is decoded.

    Attributes:
        name: the folder or manifest path. files: resolved paths. labels: class name per file.
        split_of: per file its predefined split (``train`` / ``val`` / ``test`` folders), or None.
        skipped: files a manifest lists that are not there (missing, a broken link, a FIFO): an error with
            ``strict``.
        notes: what else was left out, named in one warning: a folder's other files, repeats dropped.
        meta: what a run records (a manifest's SHA-256, files outside its folder). columns: a manifest's columns.
    """

    name: str
    files: list[Path]
    labels: list[str]
    split_of: list[str] | None = None
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def label_indices(self) -> torch.Tensor:
        """Each file's class as an index into :attr:`classes`."""
        index = {c: i for i, c in enumerate(self.classes)}
        return torch.tensor([index[name] for name in self.labels], dtype=torch.long)

    def predefined_splits(self) -> dict[str, torch.Tensor]:
        """The positions of the files in each ``train`` / ``val`` / ``test`` folder (empty without such folders)."""
        if self.split_of is None:
            return {}
        where = np.array(self.split_of)
        return {s: torch.from_numpy(np.flatnonzero(where == s)).long() for s in SPLIT_NAMES if (where == s).any()}


def list_folder(root: str | os.PathLike) -> Listing:
    """List ``root/<class>/*.png`` (or ``root/{train,val,test}/<class>/...`` with predefined splits) without
    decoding: files, class names, what was left out (with what it is)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"expected a folder of class folders, got {str(root)!r}, which {path_kind(root)}")
    subdirs = {p.name for p in root.iterdir() if p.is_dir()}
    split_dirs = [s for s in SPLIT_NAMES if s in subdirs] if {"train", "test"} <= subdirs else []
    parts = [(s, root / s) for s in split_dirs] or [("", root)]
    scanned, skipped = {}, []
    for split, folder in parts:
        scanned[split], bad = _scan_classes(folder)
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
            labels += [name] * len(files)
            split_of += [split] * len(files)
    # the same file twice (through a symbolic link): once, and never in two splits
    where = [name + (f" in {split}/" if split else "") for name, split in zip(labels, split_of)]
    rows, notes = _duplicates([p.resolve() for p in paths], where, repr(str(root)), [str(p) for p in paths])
    empty = [c for c in class_names if not any(labels[i] == c for i in rows)]
    if empty:
        raise DataError(f"class folder(s) {', '.join(repr(e) for e in empty)} in {str(root)!r} hold no readable "
                        f"images; add images or remove the folder(s)")
    # a folder's other files (notes, a FIFO, a broken link) are not the data: named, never an error
    return Listing(str(root), [paths[i] for i in rows], [labels[i] for i in rows],
                   [split_of[i] for i in rows] if split_dirs else None, [], skipped + notes)


def read_manifest(path: str | os.PathLike) -> dict:
    """Read and check a CSV manifest (header ``path,label``, more columns allowed) without decoding an image.

    Returns ``files`` (resolved paths), ``labels`` (names), ``rows`` (the CSV line of each), ``columns`` (every
    column, by name), ``skipped`` (files that are missing or not regular files, each with what it is, and repeats
    dropped), ``sha256`` of the manifest and ``outside``: how many files lie outside the manifest's folder
    (allowed: images are often kept elsewhere; recorded so that a reviewer sees it).

    Raises a DataError naming the rows for a missing column, a row without a path or label, a row with more
    values than the header, or a file listed twice with different labels.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"expected a CSV manifest, got {str(path)!r}, which {path_kind(path)}")
    data = path.read_bytes()
    try:
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{str(path)!r} is not a readable CSV manifest ({type(e).__name__}: {short(str(e), 200)})"
                        ) from None
    if not rows or not {"path", "label"} <= set(rows[0]):
        got = [c for c in rows[0] if c is not None] if rows else "no rows"
        raise DataError(f"expected CSV columns 'path,label' in {str(path)!r}, got {short(got, 200)}")
    def problem(r: dict) -> str | None:
        if None in r:
            return "more values than the header has columns"
        if not (r.get("path") or "").strip() or not (r.get("label") or "").strip():
            return f"no {'path' if not (r.get('path') or '').strip() else 'label'}"
        return "a NUL character in the path" if "\x00" in r["path"] else None

    bad = [f"line {i + 2}: {problem(r)}" for i, r in enumerate(rows) if problem(r)]
    if bad:
        raise DataError(f"{len(bad)} malformed row(s) in {str(path)!r} (each row needs a path and a label):\n  "
                        + "\n  ".join(bad[:20]) + ("\n  ..." if len(bad) > 20 else ""))
    files = [(path.parent / r["path"].strip()).resolve() for r in rows]
    labels = [r["label"].strip() for r in rows]
    lines = [f"{path.name} line {i + 2}" for i in range(len(rows))]
    keep, notes = _duplicates(files, labels, repr(str(path)), lines)
    readable = {i: _is_file(files[i]) for i in keep}
    skipped = [f"{short(str(files[i]), 200)} ({lines[i]}): {path_kind(files[i])}" for i in keep if not readable[i]]
    keep = [i for i in keep if readable[i]]
    folder = path.parent.resolve()
    return {"files": [files[i] for i in keep], "labels": [labels[i] for i in keep], "rows": [i + 2 for i in keep],
            "columns": {c: [(rows[i].get(c) or "").strip() for i in keep] for c in rows[0] if c is not None},
            "skipped": skipped, "notes": notes, "sha256": hashlib.sha256(data).hexdigest(),
            "outside": sum(not files[i].is_relative_to(folder) for i in keep)}


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False also where the OS refuses to look (a name too long, a loop of links)."""
    try:
        return path.is_file()
    except OSError:
        return False


def list_manifest(path: str | os.PathLike) -> Listing:
    """A CSV manifest (see :func:`read_manifest`) as a :class:`Listing`."""
    m = read_manifest(path)
    if len(set(m["labels"])) < 2:
        raise DataError(f"expected at least 2 labels in {str(path)!r}, got {sorted(set(m['labels']))}")
    return Listing(str(path), m["files"], m["labels"], None, m["skipped"], m["notes"],
                   {"manifest_sha256": m["sha256"], "outside_manifest_folder": m["outside"]}, m["columns"])
