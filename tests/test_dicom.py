"""DICOM images (optik.data.dicom) against pydicom's own display pipeline, on every test file pydicom ships.

The reference is pydicom's ``apply_modality_lut`` then ``apply_voi_lut`` (its first VOI LUT or window), then the
mapping to 8 bits that optik documents: a window's output range ``y_min .. y_max`` (as pydicom's
``apply_windowing`` computes it) to 0 .. 255, a VOI LUT's ``0 .. 2**bits - 1`` to 0 .. 255, else the image's own
min .. max; ``MONOCHROME1`` inverted. Colour is pydicom's ``pixel_array`` (RGB), palettes its ``apply_color_lut``.
"""
import shutil
import struct
import sys
import warnings
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from PIL import Image

pydicom = pytest.importorskip("pydicom", minversion="3")
from pydicom.dataset import Dataset  # noqa: E402
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, apply_windowing  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402

import optik  # noqa: E402
from optik.core.errors import ConfigError, DataError  # noqa: E402
from optik.data.dicom import decode_dicom, dicom_header, is_dicom, parse_window  # noqa: E402
from optik.data.files import ImageFiles, decode_files, image_header, load_listing  # noqa: E402
from optik.data.folder import SkippedImagesWarning, decode_image, fit_image, list_folder  # noqa: E402


def _shipped_test_files() -> list[str]:
    """pydicom's test files that ship in the package (its downloadable ones are left out: no network here, and a
    download attempt costs seconds per file)."""
    import pydicom.data.data_manager as manager

    with mock.patch.object(manager, "online_test_file_dummy_paths", dict), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sorted(manager.get_testdata_files("*"))


FILES = _shipped_test_files()
GREY = ("MONOCHROME1", "MONOCHROME2")
# why pydicom itself cannot give an image, and what optik's error must then say
REASONS = {"not DICOM": r"not a (readable )?DICOM file", "no pixel data": "without pixel data",
           "multi-frame": r": \d+ frames", "bad header": "expected a whole number",
           "undecodable": r"cannot be decoded|no Rows / Columns"}


def data_file(name: str) -> Path:
    return Path(pydicom.data.get_testdata_file(name))


def expected_kind(path) -> str:
    """What pydicom alone makes of the file: ``grey`` or ``colour`` (a single-frame image it decodes), or one of
    :data:`REASONS`."""
    try:
        ds = pydicom.dcmread(path)
    except Exception:  # noqa: BLE001
        return "not DICOM"
    if "PixelData" not in ds:
        return "no pixel data"
    try:
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        return "bad header"
    if frames != 1:
        return "multi-frame"
    try:
        ds.pixel_array
    except Exception:  # noqa: BLE001
        return "undecodable"
    return "grey" if ds.PhotometricInterpretation in GREY else "colour"


def window_range(ds) -> tuple[float, float]:
    """``(y_min, y_max)``: the output range of pydicom's ``apply_windowing`` (its own lines, restated)."""
    if ds.get("ModalityLUTSequence"):
        y_min, y_max = 0, 2 ** ds.ModalityLUTSequence[0].LUTDescriptor[2] - 1
    elif ds.PixelRepresentation == 0:
        y_min, y_max = 0, 2 ** ds.BitsStored - 1
    else:
        y_min, y_max = -(2 ** (ds.BitsStored - 1)), 2 ** (ds.BitsStored - 1) - 1
    if ds.get("RescaleSlope") is not None and ds.get("RescaleIntercept") is not None:
        y_min, y_max = (y * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for y in (y_min, y_max))
    return y_min, y_max


def to_uint8(fraction) -> np.ndarray:
    return np.clip(np.round(np.asarray(fraction, dtype=np.float64) * 255), 0, 255).astype(np.uint8)


def reference(ds) -> np.ndarray:
    """pydicom's pipeline for a decoded single-frame dataset, mapped to 8 bits as optik documents."""
    arr = ds.pixel_array
    pi = ds.PhotometricInterpretation
    if pi == "PALETTE COLOR":
        rgb = apply_color_lut(arr, ds)
        return to_uint8(rgb / (2 ** (8 * rgb.dtype.itemsize) - 1))
    if pi not in GREY:
        return to_uint8(arr / (2 ** ds.BitsStored - 1))
    values = apply_modality_lut(arr, ds)
    out = apply_voi_lut(values, ds).astype(np.float64)
    lut = ds.get("VOILUTSequence")
    if lut and lut[0].get("LUTDescriptor") is not None and lut[0].get("LUTData") is not None:
        fraction = out / (2 ** lut[0].LUTDescriptor[2] - 1)
    elif ds.get("WindowCenter") is not None and ds.get("WindowWidth") is not None:
        y_min, y_max = window_range(ds)
        fraction = (out - y_min) / (y_max - y_min)
    else:
        fraction = (out - out.min()) / (out.max() - out.min()) if out.max() > out.min() else np.zeros_like(out)
    result = to_uint8(fraction)
    return 255 - result if pi == "MONOCHROME1" else result


def assert_close(got: np.ndarray, want: np.ndarray, name: str = "") -> None:
    """Equal shapes, and every pixel within one 8-bit level."""
    assert got.dtype == np.uint8 and got.shape == want.shape, (name, got.shape, want.shape)
    worst = int(np.abs(got.astype(int) - want.astype(int)).max(initial=0))
    assert worst <= 1, f"{name}: off by up to {worst} levels"


@pytest.mark.parametrize("path", FILES, ids=[Path(f).name for f in FILES])
def test_every_shipped_test_file_decodes_as_pydicom_does_or_is_refused_by_name(path):
    kind = expected_kind(path)
    if kind in ("grey", "colour"):
        got = decode_dicom(path)
        assert_close(got, reference(pydicom.dcmread(path)), Path(path).name)
        assert got.ndim == (2 if kind == "grey" else 3)
        assert dicom_header(path) == (*got.shape[:2], kind == "grey")
    else:
        with pytest.raises(DataError, match=REASONS[kind]) as caught:
            decode_dicom(path)
        assert str(path) in str(caught.value)


def test_the_shipped_files_cover_every_kind():
    """The test above cannot pass by testing nothing: the counts for pydicom 3.0's shipped files (86 paths)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        kinds = [expected_kind(f) for f in FILES]
    counts = {k: kinds.count(k) for k in set(kinds)}
    assert counts["grey"] >= 20 and counts["colour"] >= 25, counts
    assert all(counts.get(k, 0) >= 1 for k in REASONS), counts
    assert sum(counts[k] for k in REASONS) >= 30, counts


def test_monochrome1_is_inverted_so_that_bone_is_bright(tmp_path):
    ds = pydicom.dcmread(data_file("CT_small.dcm"))
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.save_as(tmp_path / "m1.dcm")
    got = decode_dicom(tmp_path / "m1.dcm")
    np.testing.assert_array_equal(got, 255 - decode_dicom(data_file("CT_small.dcm")))
    assert_close(got, reference(pydicom.dcmread(tmp_path / "m1.dcm")))
    assert got.max() == 255 and got.min() == 0


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small.dcm"])
@pytest.mark.parametrize("function", [None, "LINEAR", "LINEAR_EXACT", "SIGMOID"])
def test_a_window_override_is_the_window_formula(tmp_path, name, function):
    """A user window replaces the file's (MR_small has one, CT_small none): the result is pydicom's
    ``apply_windowing`` with that window, through the rescale, with the file's VOI LUT Function."""
    path = data_file(name)
    if function is not None:
        ds = pydicom.dcmread(path)
        ds.VOILUTFunction = function
        path = tmp_path / name
        ds.save_as(path)
    center, width = (40.0, 400.0) if name == "CT_small.dcm" else (1000.0, 500.0)
    got = decode_dicom(path, window=(center, width))
    ds = pydicom.dcmread(path)
    ds.WindowCenter, ds.WindowWidth = center, width
    y_min, y_max = window_range(ds)
    want = to_uint8((apply_windowing(apply_modality_lut(ds.pixel_array, ds), ds) - y_min) / (y_max - y_min))
    assert_close(got, want, f"{name} {function}")
    assert not np.array_equal(got, decode_dicom(path)), "the override changed nothing"
    assert np.array_equal(got, decode_dicom(path, window=f"{center:g},{width:g}"))
    assert np.array_equal(got, decode_image(path, dicom_window=(center, width)))


def test_lut_sequences_follow_pydicom(tmp_path):
    """A Modality LUT Sequence and a VOI LUT Sequence (pydicom applies them) and the mapping of the VOI LUT's
    declared range 0 .. 2**bits - 1 to 0 .. 255; a user window replaces the VOI LUT."""
    ds = pydicom.dcmread(data_file("MR_small.dcm"))
    modality, voi = Dataset(), Dataset()
    modality.add_new(0x00283002, "US", [4096, 0, 16])  # LUT Descriptor: entries, first value mapped, bits (8 or 16)
    modality.add_new(0x00283006, "US", [int(4095 * (i / 4095) ** 0.7) for i in range(4096)])  # LUT Data, 12-bit
    voi.add_new(0x00283002, "US", [4096, 0, 16])
    voi.add_new(0x00283006, "US", [int(65535 * (i / 4095) ** 2) for i in range(4096)])
    ds.ModalityLUTSequence, ds.VOILUTSequence = Sequence([modality]), Sequence([voi])
    ds.save_as(tmp_path / "luts.dcm")
    got = decode_dicom(tmp_path / "luts.dcm")
    assert_close(got, reference(pydicom.dcmread(tmp_path / "luts.dcm")))
    assert got.max() - got.min() > 100  # the LUTs did not flatten the image: the comparison means something
    del ds.VOILUTSequence  # now MR_small's own window, applied to the Modality LUT's output
    ds.save_as(tmp_path / "modality.dcm")
    assert_close(decode_dicom(tmp_path / "modality.dcm"), reference(pydicom.dcmread(tmp_path / "modality.dcm")))
    overridden = decode_dicom(tmp_path / "luts.dcm", window=(2000, 1000))
    assert np.array_equal(overridden, decode_dicom(tmp_path / "modality.dcm", window=(2000, 1000)))


def test_a_multi_frame_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "dose volume.dcm"
    shutil.copy(data_file("rtdose.dcm"), path)
    with pytest.raises(DataError, match=r"dose volume\.dcm: 15 frames; optik reads single-frame"):
        decode_dicom(path)
    assert dicom_header(path) is None and image_header(path) is None


def test_the_pixel_limit_is_checked_before_decoding(monkeypatch):
    import optik.data.dicom as dicom

    monkeypatch.setattr(dicom, "MAX_IMAGE_PIXELS", 128 * 128 - 1)
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(lambda ds: pytest.fail("decoded")))
    with pytest.raises(DataError, match=r"CT_small\.dcm: 128 x 128 pixels \(0 MP\) is over optik's limit"):
        decode_dicom(data_file("CT_small.dcm"))


def test_without_pydicom_the_error_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "ct.dcm"
    shutil.copy(data_file("CT_small.dcm"), path)
    monkeypatch.setitem(sys.modules, "pydicom", None)
    for read in (decode_dicom, decode_image, image_header):
        with pytest.raises(ConfigError, match=r"pip install 'optik\[dicom\]'"):
            read(path)


def test_windows_are_parsed_and_checked():
    assert parse_window("40,400") == parse_window(" 40 , 400 ") == parse_window([40, 400]) == (40.0, 400.0)
    assert parse_window("-600,1500.5") == (-600.0, 1500.5)
    for bad in ("40", "40,400,1", "a,b", "", "40,0", "40,-1", "nan,400", None, 40):
        with pytest.raises(ConfigError, match=r"expected a DICOM window"):
            parse_window(bad)
    with pytest.raises(ConfigError, match=r"width 0\.5 is too small for the VOI LUT Function LINEAR"):
        decode_dicom(data_file("MR_small.dcm"), window=(1000, 0.5))


def test_dicom_is_found_by_name_or_by_its_marker(tmp_path):
    """A DICOM file without a suffix (common) is recognised by its DICM marker, also through decode_image; a PNG
    still goes to PIL."""
    plain = tmp_path / "IM0001"
    shutil.copy(data_file("MR_small.dcm"), plain)
    Image.fromarray(np.zeros((4, 5), np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "notes.dcm").write_text("not an image")
    assert is_dicom(plain) and is_dicom(tmp_path / "notes.dcm") and not is_dicom(tmp_path / "x.png")
    assert np.array_equal(decode_image(plain), decode_dicom(data_file("MR_small.dcm")))
    assert image_header(plain) == (64, 64, True) and image_header(tmp_path / "x.png") == (4, 5, True)
    with pytest.raises(DataError, match=r"notes\.dcm: not a DICOM file"):
        decode_image(tmp_path / "notes.dcm")


def tiff_preamble() -> bytes:
    """A valid 1 x 1 grey TIFF in 128 bytes (its pixel: byte 0): the preamble of a dual-personality DICOM / TIFF
    file (DICOM PS3.10 7.5 allows it)."""
    tags = [(256, 3, 1, 1), (257, 3, 1, 1), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (273, 4, 1, 0),
            (278, 3, 1, 1), (279, 4, 1, 1)]  # width, height, bits, no compression, black is 0, strip at 0, 1 byte
    ifd = struct.pack("<H", len(tags)) + b"".join(struct.pack("<HHII", *t) for t in tags) + struct.pack("<I", 0)
    return (b"II*\x00" + struct.pack("<I", 8) + ifd).ljust(128, b"\x00")


def test_a_dicom_file_whose_preamble_is_a_tiff_is_read_as_dicom(tmp_path):
    ds = pydicom.dcmread(data_file("MR_small.dcm"))
    ds.preamble = tiff_preamble()
    ds.save_as(tmp_path / "dual")
    with Image.open(tmp_path / "dual") as im:
        assert (im.format, im.size) == ("TIFF", (1, 1))  # PIL alone would give a 1 x 1 image
    assert np.array_equal(decode_image(tmp_path / "dual"), decode_dicom(data_file("MR_small.dcm")))
    assert image_header(tmp_path / "dual") == (64, 64, True)


def write_mixed_folder(root: Path) -> Path:
    """Two classes, each of DICOM files of two sizes (grey; one colour) and PNGs, plus a multi-frame DICOM file."""
    rng = np.random.default_rng(0)
    dicom = {"ct": ["CT_small.dcm", "693_J2KI.dcm", "SC_rgb_rle.dcm"], "mr": ["MR_small.dcm", "JPEG2000.dcm"]}
    for c, (name, sources) in enumerate(dicom.items()):
        (root / name).mkdir(parents=True)
        for i in range(8):
            shutil.copy(data_file(sources[i % len(sources)]), root / name / f"{i:02d}.dcm")
            pixels = rng.integers(0, 100, (40, 40, 3), dtype=np.uint8) + 120 * c
            Image.fromarray(pixels).save(root / name / f"{i:02d}.png")
    shutil.copy(data_file("rtdose.dcm"), root / "ct" / "volume.dcm")
    return root


def test_a_folder_mixing_dicom_and_png_loads_and_trains(tmp_path):
    folder = write_mixed_folder(tmp_path / "data")
    listing = list_folder(folder)
    assert sum(f.suffix == ".dcm" for f in listing.files) == 17
    window = (40.0, 400.0)
    with pytest.warns(SkippedImagesWarning, match=r"volume\.dcm: 15 frames"):
        ds = load_listing(listing, image_size=32, workers=0, dicom_window=window)
    assert len(ds.images) == 32 and ds.images.shape[1:] == (3, 32, 32)  # one colour file: all RGB
    ct = str(folder / "ct" / "00.dcm")
    expected = fit_image(decode_dicom(ct, window=window), (32, 32), 3)
    assert torch.equal(ds.images[ds.sources.index(ct)], torch.from_numpy(expected))
    files = ImageFiles([ct], torch.tensor([0]), size=(32, 32), channels=3, dicom_window=window)
    assert torch.equal(files[0][0], torch.from_numpy(expected))
    images, kept, failures = decode_files([ct, str(folder / "ct" / "volume.dcm")], size=(32, 32), channels=3,
                                          workers=0, dicom_window=window)
    assert kept == [0] and torch.equal(images[0], torch.from_numpy(expected)) and "15 frames" in failures[0]
    with pytest.warns(SkippedImagesWarning, match=r"volume\.dcm"):
        result = optik.train(data=str(folder), model="cnn-small", image_size=32, epochs=1, batch_size=8,
                             out=tmp_path / "run", progress=False)
    assert result.metrics is not None and (tmp_path / "run" / "model.safetensors").is_file()
