"""A synthetic chest "X-ray" manifest for optik's subgroup audit and attribute probe: images written to a folder
(never committed), and ``manifest.csv`` with ``path,label,patient_id,sex,age_band``.

Each patient (sex, age band) has 1 to 9 images. A "pneumonia" image carries a bright, blurred opacity in one lung;
it is fainter in patients over 65, so the model misses more of theirs (a gap the audit should find). Female
patients' images carry a faint, smooth shadow over the lower lungs that no label depends on: the model's features
may still encode it, which is what ``optik probe --attribute sex`` asks. Everything is seeded.

    python examples/synthetic_xrays.py --out xrays              # 2,000 PNG images of 64 x 64, 300 patients
    python examples/synthetic_xrays.py --out xrays --dicom      # the same as 16-bit DICOM (needs optik[dicom])
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

AGE_BANDS = ("18-39", "40-64", "65+")


def chest(rng: np.random.Generator, size: int, *, opacity: float, female: bool) -> np.ndarray:
    """One image in [0, 1]: a bright body, two dark lungs, ribs, noise; an opacity and a shadow when asked."""
    y, x = np.mgrid[0:size, 0:size] / size
    body = 0.75 - 0.25 * ((x - 0.5) ** 2 + (y - 0.55) ** 2)
    img = body.copy()
    for cx in (0.32, 0.68):
        cx += rng.normal(0, 0.015)
        lung = ((x - cx) / 0.15) ** 2 + ((y - 0.5) / 0.3) ** 2 < 1
        img[lung] -= 0.35
    img += 0.04 * np.sin(2 * np.pi * (y * 9 + rng.uniform(0, 1)))  # ribs
    if female:  # a faint lower-lung shadow: present in the pixels, unrelated to the label
        img += 0.02 * np.exp(-((y - 0.75) / 0.1) ** 2)
    if opacity:
        cx, cy = rng.choice([0.32, 0.68]) + rng.normal(0, 0.04), rng.uniform(0.35, 0.65)
        img += opacity * np.exp(-(((x - cx) ** 2 + (y - cy) ** 2) / (2 * 0.07 ** 2)))
    img += rng.normal(0, 0.05, img.shape)
    return np.clip(img, 0, 1)


def patients(rng: np.random.Generator, n_images: int, n_patients: int) -> list[dict]:
    """Patients with a sex, an age band and an image count (summing to ``n_images``)."""
    counts = rng.multinomial(n_images - n_patients, np.full(n_patients, 1 / n_patients)) + 1
    return [{"patient_id": f"P{i:05d}", "sex": str(rng.choice(["F", "M"])),
             "age_band": str(rng.choice(AGE_BANDS, p=[0.3, 0.4, 0.3])), "images": int(c),
             "risk": float(rng.uniform(0.1, 0.5))} for i, c in enumerate(counts)]


def write_dicom(path: Path, img: np.ndarray) -> None:
    """A 16-bit MONOCHROME2 DICOM file with a rescale and a window, as a scanner would write one."""
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = SecondaryCaptureImageStorage, generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID, "DX"
    ds.Rows, ds.Columns = img.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.WindowCenter, ds.WindowWidth = 1024, 4096
    ds.PixelData = np.round(img * 4095).astype(np.uint16).tobytes()
    pydicom.dcmwrite(path, ds, enforce_file_format=True)


def make(out: str | Path, *, n_images: int = 2000, n_patients: int = 300, size: int = 64, seed: int = 0,
         dicom: bool = False) -> Path:
    """Write the images and ``manifest.csv`` into ``out``; returns the manifest's path."""
    out, rng = Path(out), np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for p in patients(rng, n_images, n_patients):
        for k in range(p["images"]):
            sick = rng.random() < p["risk"]
            opacity = (0.22 if p["age_band"] == "65+" else 0.4) if sick else 0.0
            img = chest(rng, size, opacity=opacity, female=p["sex"] == "F")
            name = f"images/{p['patient_id']}_{k}.{'dcm' if dicom else 'png'}"
            if dicom:
                write_dicom(out / name, img)
            else:
                from PIL import Image

                Image.fromarray(np.round(img * 255).astype(np.uint8)).save(out / name)
            rows.append({"path": name, "label": "pneumonia" if sick else "normal", "patient_id": p["patient_id"],
                         "sex": p["sex"], "age_band": p["age_band"]})
    manifest = out / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return manifest


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the folder to write")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--patients", type=int, default=300)
    p.add_argument("--size", type=int, default=64, help="pixels per side")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dicom", action="store_true", help="write 16-bit DICOM files instead of PNGs")
    a = p.parse_args()
    manifest = make(a.out, n_images=a.images, n_patients=a.patients, size=a.size, seed=a.seed, dicom=a.dicom)
    print(f"wrote {a.images} images of {a.patients} patients; manifest: {manifest}")


if __name__ == "__main__":
    main()
