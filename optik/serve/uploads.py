"""Checks on an uploaded file before and while it is decoded: size in bytes, format, pixel count, integrity.

The playground takes uploads as file paths (Gradio stores the bytes and decodes nothing), so every check is
here, in this order, each failing with an :class:`UploadError` that says what was wrong and what to do:

1. the file's size in bytes (before reading it);
2. the format, from the file's first bytes (only the formats ``optik predict`` reads; PIL's other plugins,
   e.g. EPS through Ghostscript, are never tried);
3. the dimensions the header declares, before any pixel is decoded (a decompression bomb is a small file that
   declares a huge image);
4. a full decode (a truncated or corrupt file fails here), then the same conversion as
   :func:`optik.data.folder.decode_image`.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from optik.core.errors import DataError
from optik.core.images import MAX_IMAGE_PIXELS
from optik.data.dicom import DICOM_EXTENSIONS
from optik.data.folder import IMAGE_EXTENSIONS, _to_uint8

# The formats PIL reads among IMAGE_EXTENSIONS (DICOM files are read from folders and manifests, not uploaded)
UPLOAD_EXTENSIONS = tuple(e for e in IMAGE_EXTENSIONS if e not in DICOM_EXTENSIONS)
FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")
MAX_UPLOAD_MB = 10.0
MAX_PIXELS = MAX_IMAGE_PIXELS  # the one limit optik decodes images up to (optik/core/images.py)


class UploadError(DataError):
    """An upload was refused; the message is meant for the person who uploaded it."""


def _size(n: float) -> str:
    """Bytes for people: ``12.3 MB``, ``4.1 KB`` (powers of ten, as ``max_upload_mb``)."""
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} KB"


def check_size(path: str | os.PathLike, *, max_bytes: int) -> int:
    """The file's size in bytes; UploadError if it is empty or larger than ``max_bytes``."""
    name, size = Path(path).name, os.path.getsize(path)
    if size == 0:
        raise UploadError(f"{name} is empty (0 bytes); expected an image file")
    if size > max_bytes:
        raise UploadError(f"{name} is {_size(size)}; the playground accepts uploads up to "
                          f"{_size(max_bytes)}. Downscale or compress the image and upload it again")
    return size


def _open(path: Path) -> Image.Image:
    """PIL's lazy open (header only) restricted to :data:`FORMATS`, with PIL's bomb warning made an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return Image.open(path, formats=FORMATS)
        except UnidentifiedImageError:
            raise UploadError(f"{path.name} is not an image optik can read: its content is none of "
                              f"{', '.join(FORMATS)} (whatever its name says). Upload a "
                              f"{', '.join(UPLOAD_EXTENSIONS)} image") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise UploadError(f"{path.name} declares too many pixels for its size, like a decompression bomb "
                              f"({e}); refused before decoding") from None
        except (OSError, SyntaxError, ValueError) as e:  # a header that starts right and then breaks
            raise UploadError(f"{path.name} is a damaged image file ({type(e).__name__}: {e})") from None


def decode_upload(path: str | os.PathLike, *, max_bytes: int = int(MAX_UPLOAD_MB * 1e6),
                  max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Check and decode an uploaded image into ``uint8`` ``H x W`` (grey) or ``H x W x 3`` (colour).

    Args:
        path: the uploaded file.
        max_bytes: the largest file accepted, in bytes.
        max_pixels: the largest ``width * height`` decoded, checked on the header before decoding.

    Returns:
        What :func:`optik.data.folder.decode_image` returns for the file (16-bit scaled to 8, alpha dropped).

    Raises:
        UploadError: the file is too large, not an image, declares too many pixels, or is truncated / corrupt.
    """
    path = Path(path)
    check_size(path, max_bytes=max_bytes)
    with _open(path) as im:
        w, h = im.size
        if w * h > max_pixels:
            raise UploadError(f"{path.name} declares {w} x {h} pixels ({w * h / 1e6:.0f} megapixels); the playground "
                              f"decodes at most {max_pixels / 1e6:.0f} megapixels. Refused before decoding: "
                              f"downscale the image and upload it again")
        try:
            im.load()  # the full decode: a truncated or corrupt file fails here
            return _to_uint8(im)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise UploadError(f"{path.name} is a truncated or corrupt {im.format} file and cannot be decoded "
                              f"({type(e).__name__}: {e})") from None


__all__ = ["FORMATS", "MAX_PIXELS", "MAX_UPLOAD_MB", "UploadError", "check_size", "decode_upload"]
