"""DICOM (``.dcm``) images decoded like any other image file: into ``uint8`` ``H x W`` (grey) or ``H x W x 3``.

pydicom reads the files and decodes their pixel data (``pip install 'optik[dicom]'``: pydicom >= 3 and the
pylibjpeg plugins for JPEG, JPEG-LS and JPEG 2000 compressed transfer syntaxes). Grey images then go through the
display pipeline of DICOM PS3.4 N.2.1.1, done here in numpy except for lookup-table sequences (pydicom's):

1. Modality LUT (PS3.3 C.11.1): ``Rescale Slope * v + Rescale Intercept`` (both must be present, as pydicom
   requires), or the Modality LUT Sequence (``pydicom.pixels.apply_modality_lut``).
2. VOI (PS3.3 C.11.2): the user's ``window = (center, width)`` if given; else the first VOI LUT Sequence item
   (``pydicom.pixels.apply_voi``); else the first Window Center / Width, with the VOI LUT Function the file names
   (``LINEAR`` by default, ``LINEAR_EXACT``, ``SIGMOID``; a user window is applied with that function too).
3. To 8 bits, ``round(255 * f)`` of a fraction ``f`` in ``[0, 1]``:
   after a window, ``f`` is the position in the window's output range (``y_min .. y_max`` of C.11.2.1.2: the
   window's formula with ``y_min = 0, y_max = 1``); after a VOI LUT, ``f = v / (2**bits - 1)`` with ``bits``
   the third value of its LUT Descriptor; with neither, the image's own ``min .. max`` (a constant image is 0).
4. ``MONOCHROME1`` (low values bright) is inverted, ``255 - v``, so that bone is bright as in ``MONOCHROME2``.

Colour images: ``RGB`` and the ``YBR_FULL``, ``YBR_FULL_422``, ``YBR_ICT``, ``YBR_RCT`` encodings are decoded
to RGB by pydicom (its ``pixel_array``); ``PALETTE COLOR`` is expanded by ``pydicom.pixels.apply_color_lut``;
samples deeper than 8 bits are scaled ``round(v * 255 / (2**bits - 1))`` (``bits``: Bits Stored, or the palette's
entry size). No window applies to colour (PS3.3 C.11.2 is for grey); an ICC profile is not applied.

Refused with a :class:`~optik.core.errors.DataError` naming the file and why: a file that is not DICOM (a
DICOM file without its 128-byte preamble and ``DICM`` marker included), no pixel data, more than one frame,
pixel data that the installed plugins cannot decode, an unsupported photometric interpretation, more than
``MAX_IMAGE_PIXELS`` pixels, and a window whose width the VOI LUT Function forbids.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np

from optik.core.errors import ConfigError, DataError, OptikError
from optik.core.images import MAX_IMAGE_PIXELS

DICOM_EXTENSIONS = (".dcm", ".dicom")
INSTALL = "pip install 'optik[dicom]'"
GREY = ("MONOCHROME1", "MONOCHROME2")
# photometric interpretations that pydicom's pixel_array returns as RGB (YBR_FULL* converted by pydicom, the
# JPEG 2000 component transforms YBR_ICT / YBR_RCT undone by the decoder)
RGB_LIKE = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_ICT", "YBR_RCT")
SUPPORTED = GREY + RGB_LIKE + ("PALETTE COLOR",)
PIXEL_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")


def is_dicom(path: str | os.PathLike) -> bool:
    """True for a ``.dcm`` / ``.dicom`` name, or for a file with DICOM's ``DICM`` marker at byte 128 (DICOM files
    often have no suffix). Reads at most 132 bytes; False where the file cannot be read."""
    if Path(path).suffix.lower() in DICOM_EXTENSIONS:
        return True
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def parse_window(window: str | Sequence[float]) -> tuple[float, float]:
    """A DICOM window ``(center, width)`` from ``"center,width"`` (e.g. ``"40,400"``, a CT soft-tissue window) or
    a pair of numbers, in the units after the modality LUT (Hounsfield units for CT). ConfigError unless both are
    finite numbers and the width is positive."""
    parts = window.split(",") if isinstance(window, str) else window
    try:
        center, width = (float(p) for p in parts)
    except (TypeError, ValueError):  # not two values, or not numbers
        raise ConfigError(f"expected a DICOM window as 'center,width' (two numbers, e.g. '40,400'), got "
                          f"{window!r}") from None
    if not (math.isfinite(center) and math.isfinite(width) and width > 0):
        raise ConfigError(f"expected a DICOM window with a finite center and a width > 0, got center {center:g} "
                          f"and width {width:g}")
    return center, width


def dicom_header(path: str | os.PathLike) -> tuple[int, int, bool] | None:
    """``(height, width, grey)`` from the file's header (pixel data not read); None if it is not a single-frame
    DICOM image optik can decode (:func:`decode_dicom` says why). ConfigError if pydicom is not installed."""
    try:
        ds = _read(path, stop_before_pixels=True)
        rows, columns, photometric = _describe(ds, path)
    except DataError:
        return None
    return rows, columns, photometric in GREY


def decode_dicom(path: str | os.PathLike, *, window: str | Sequence[float] | None = None) -> np.ndarray:
    """Decode one single-frame DICOM file into ``uint8`` ``H x W`` (grey) or ``H x W x 3`` (colour, RGB).

    Args:
        path: the file.
        window: ``(center, width)`` (or ``"center,width"``) replacing the file's VOI LUT and windows, in the
            units after the modality LUT; see the module's docstring for the pipeline and the mapping to 8 bits.

    Raises:
        DataError: naming the file and why it cannot be decoded (see the module's docstring).
        ConfigError: pydicom is not installed, or ``window`` is malformed or too narrow for the file's function.
    """
    window = None if window is None else parse_window(window)
    ds = _read(path, stop_before_pixels=False)
    if not any(tag in ds for tag in PIXEL_TAGS):
        raise DataError(f"{path}: a DICOM file without pixel data ({_sop_class(ds)}); expected an image")
    rows, columns, photometric = _describe(ds, path)
    stored = _decode(ds, path)
    if stored.shape[:2] != (rows, columns):
        raise DataError(f"{path}: pixel data of shape {stored.shape}, expected {rows} x {columns} (Rows x Columns)")
    try:
        if photometric in GREY:
            return _grey(stored, ds, window, path, invert=photometric == "MONOCHROME1")
        return _colour(stored, ds, photometric, path)
    except OptikError:
        raise
    except Exception as e:  # noqa: BLE001 - a malformed LUT or attribute fails in many ways inside pydicom
        raise DataError(f"{path}: its pixel values cannot be mapped to 8 bits ({_why(e)})") from None


def _pydicom():
    """The pydicom module (>= 3, for ``pydicom.pixels``), or a ConfigError naming the extra that installs it."""
    try:
        import pydicom
        import pydicom.pixels  # noqa: F401 - pydicom >= 3; 2.x has no such module
    except ImportError as e:
        raise ConfigError(f"reading DICOM files needs pydicom >= 3 and the pylibjpeg plugins ({type(e).__name__}: "
                          f"{e}); install them with: {INSTALL}") from None
    return pydicom


def _why(e: BaseException, limit: int = 300) -> str:
    """``Type: message`` on one line (pydicom's decoding errors span lines), cut to ``limit`` characters."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:limit]}{'...' if len(text) > limit else ''}"


def _read(path: str | os.PathLike, *, stop_before_pixels: bool):
    """The file's dataset; DataError naming the file if it is not DICOM."""
    pydicom = _pydicom()
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=stop_before_pixels)
    except InvalidDicomError:
        raise DataError(f"{path}: not a DICOM file: no 'DICM' marker at byte 128 (a bare DICOM data set, without "
                        f"preamble and file meta header, is not read either; dcmtk's 'dcmconv +F' adds them)"
                        ) from None
    except Exception as e:  # noqa: BLE001 - a directory, a truncated header, a malformed element, ...
        raise DataError(f"{path}: not a readable DICOM file ({_why(e)})") from None


def _sop_class(ds) -> str:
    """What the file is, by its SOP Class (``RT Plan Storage``, ``Basic Text SR Storage``, ...)."""
    uid = ds.get("SOPClassUID")
    return f"SOP class {getattr(uid, 'name', uid)}" if uid else "no SOP class"


def _describe(ds, path) -> tuple[int, int, str]:
    """``(rows, columns, photometric interpretation)`` of a single-frame image optik can decode, from the header;
    DataError naming the file otherwise (several frames, no size, too many pixels, unsupported colour)."""
    rows, columns, frames = (_whole(ds, path, name) for name in ("Rows", "Columns", "NumberOfFrames"))
    frames = 1 if frames is None else frames
    if rows is None or columns is None:
        raise DataError(f"{path}: its header has no Rows / Columns (the image size); expected an image")
    if frames != 1:
        raise DataError(f"{path}: {frames} frames; optik reads single-frame DICOM images (one image per file): "
                        f"write the frames to separate files")
    if rows * columns > MAX_IMAGE_PIXELS:
        raise DataError(f"{path}: {columns} x {rows} pixels ({rows * columns / 1e6:.0f} MP) is over optik's limit of "
                        f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP; resize it first")
    photometric = str(ds.get("PhotometricInterpretation") or "").strip().upper()
    if photometric not in SUPPORTED:
        raise DataError(f"{path}: photometric interpretation {photometric or 'missing'!r} is not supported; "
                        f"expected one of {', '.join(SUPPORTED)}")
    return rows, columns, photometric


def _whole(ds, path, name: str) -> int | None:
    """The header's ``name`` as an int, None if absent or empty; DataError naming it if it is not a number."""
    value = ds.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"{path}: {name} is {value!r} in its header; expected a whole number") from None


def _decode(ds, path) -> np.ndarray:
    """The stored pixel values (colour as RGB); DataError naming the transfer syntax if they cannot be decoded."""
    try:
        return ds.pixel_array
    except Exception as e:  # noqa: BLE001 - each decoding plugin raises its own errors
        syntax = getattr(ds, "file_meta", {}).get("TransferSyntaxUID")
        hint = (f"; the pylibjpeg plugins of {INSTALL} decode JPEG, JPEG-LS and JPEG 2000"
                if getattr(syntax, "is_compressed", False) else "")
        name = getattr(syntax, "name", None) or "no transfer syntax"
        raise DataError(f"{path}: its pixel data ({name}) cannot be decoded ({_why(e)}){hint}") from None


def _to_uint8(fraction: np.ndarray) -> np.ndarray:
    """``round(255 * f)`` of fractions in ``[0, 1]`` (clipped; NaN becomes 0)."""
    return np.clip(np.round(np.nan_to_num(fraction, nan=0.0) * 255.0), 0, 255).astype(np.uint8)


def _grey(stored: np.ndarray, ds, window: tuple[float, float] | None, path, *, invert: bool) -> np.ndarray:
    """Stored grey values -> modality LUT -> VOI LUT or window -> 8 bits -> MONOCHROME1 inverted."""
    values = _modality(stored, ds)
    fraction = _voi(values, ds, window, path)
    out = _to_uint8(_min_max(values) if fraction is None else fraction)
    return 255 - out if invert else out


def _modality(stored: np.ndarray, ds) -> np.ndarray:
    """PS3.3 C.11.1: the Modality LUT Sequence (pydicom's), or ``slope * v + intercept`` in float64 where both are
    given; else the stored values."""
    if ds.get("ModalityLUTSequence"):
        from pydicom.pixels import apply_modality_lut

        return apply_modality_lut(stored, ds)
    slope, intercept = ds.get("RescaleSlope"), ds.get("RescaleIntercept")
    if slope in (None, "") or intercept in (None, ""):
        return stored
    return stored.astype(np.float64) * float(slope) + float(intercept)


def _voi(values: np.ndarray, ds, window: tuple[float, float] | None, path) -> np.ndarray | None:
    """The VOI stage as a fraction of its output range in ``[0, 1]``, or None where the file has no VOI LUT and
    no window and none is given."""
    given = window is not None
    if not given:
        lut = _voi_lut(values, ds)
        if lut is not None:
            return lut
        window = _file_window(ds, path)
        if window is None:
            return None
    function = str(ds.get("VOILUTFunction") or "LINEAR").strip().upper()
    return window_fraction(values, *window, function=function, path=path, users=given)


def _voi_lut(values: np.ndarray, ds) -> np.ndarray | None:
    """The first VOI LUT Sequence item (pydicom's ``apply_voi``) as a fraction of ``0 .. 2**bits - 1``; None
    without a usable item. Non-integer inputs (after a rescale) are rounded to the nearest entry."""
    items = ds.get("VOILUTSequence")
    if not items or items[0].get("LUTDescriptor") is None or items[0].get("LUTData") is None:
        return None
    from pydicom.pixels import apply_voi

    if not np.issubdtype(values.dtype, np.integer):
        values = np.rint(values).astype(np.int64)
    bits = int(items[0].LUTDescriptor[2])
    return apply_voi(values, ds, 0).astype(np.float64) / (2 ** bits - 1)


def _file_window(ds, path) -> tuple[float, float] | None:
    """The first Window Center / Width of the file, or None unless both are given."""
    try:
        center, width = _first(ds.get("WindowCenter")), _first(ds.get("WindowWidth"))
    except (TypeError, ValueError) as e:
        raise DataError(f"{path}: Window Center / Width are not numbers ({_why(e)})") from None
    return None if center is None or width is None else (center, width)


def _first(value) -> float | None:
    """The first value of a (possibly multi-valued) numeric element, or None if empty."""
    if not isinstance(value, (str, bytes, int, float)) and value is not None:  # multi-valued: a list-like
        value = value[0] if len(value) else None
    if value is None or isinstance(value, (str, bytes)) and not value.strip():
        return None
    return float(value)


def window_fraction(values: np.ndarray, center: float, width: float, *, function: str = "LINEAR", path=None,
                    users: bool = False) -> np.ndarray:
    """A window (DICOM PS3.3 C.11.2.1.2 ``LINEAR``, C.11.2.1.3.2 ``LINEAR_EXACT``, C.11.2.1.3.1 ``SIGMOID``) with
    output range ``[0, 1]`` (the standard's ``y_min = 0``, ``y_max = 1``), float64 of ``values``' shape.

    ``LINEAR`` maps ``v <= c - 0.5 - (w - 1) / 2`` to 0, ``v > c - 0.5 + (w - 1) / 2`` to 1 and
    ``(v - (c - 0.5)) / (w - 1) + 0.5`` between (needs ``w >= 1``); ``LINEAR_EXACT`` the same without the 0.5
    and 1 offsets (``w > 0``); ``SIGMOID`` is ``1 / (1 + exp(-4 (v - c) / w))`` (``w > 0``).
    Raises a DataError naming ``path`` for an unknown function or a width it forbids (a ConfigError when
    ``users``: the window came from the user).
    """
    error = ConfigError if users else DataError
    where = f"{path}: " if path is not None else ""
    if function not in VOI_FUNCTIONS:
        raise error(f"{where}VOI LUT Function {function!r} is not supported; expected one of "
                    f"{', '.join(VOI_FUNCTIONS)}")
    if not (width >= 1 if function == "LINEAR" else width > 0):
        raise error(f"{where}window width {width:g} is too small for the VOI LUT Function {function}; expected "
                    f"{'>= 1' if function == 'LINEAR' else '> 0'} (DICOM PS3.3 C.11.2.1)")
    x = np.asarray(values, dtype=np.float64)
    if function == "SIGMOID":
        with np.errstate(over="ignore"):  # exp overflows to inf far below the center: the fraction is then 0
            return 1.0 / (1.0 + np.exp(-4.0 * (x - center) / width))
    if function == "LINEAR":
        center, width = center - 0.5, width - 1.0
    if width == 0:  # LINEAR with width 1: a threshold at the center
        return (x > center).astype(np.float64)
    return np.clip((x - center) / width + 0.5, 0.0, 1.0)


def _min_max(values: np.ndarray) -> np.ndarray:
    """The image's own range ``min .. max`` (finite values) as ``[0, 1]``; a constant image is all 0."""
    x = np.asarray(values, dtype=np.float64)
    finite = x[np.isfinite(x)]
    if finite.size == 0 or finite.min() == finite.max():
        return np.zeros_like(x)
    low, high = finite.min(), finite.max()
    return (x - low) / (high - low)


def _colour(stored: np.ndarray, ds, photometric: str, path) -> np.ndarray:
    """RGB as ``uint8`` ``H x W x 3``: a palette expanded by pydicom, deeper samples scaled to 8 bits."""
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        rgb = apply_color_lut(stored, ds)  # uint8 or uint16, as the palette's descriptor says
        bits = 8 * rgb.dtype.itemsize
    else:
        rgb, bits = stored, int(ds.get("BitsStored") or 8 * stored.dtype.itemsize)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise DataError(f"{path}: colour pixel data of shape {rgb.shape}, expected H x W x 3")
    if rgb.dtype == np.uint8 and bits == 8:
        return np.ascontiguousarray(rgb)
    return _to_uint8(rgb.astype(np.float64) / (2 ** bits - 1))


__all__ = ["DICOM_EXTENSIONS", "decode_dicom", "dicom_header", "is_dicom", "parse_window", "window_fraction"]
