"""Prepare once, train many times: a dataset's resized images written as LitData shards (read back by
:mod:`optik.data.shards`).

``optik prepare DATA --out DIR --image-size N`` lists and splits the data as training would (seeded, stratified,
from labels alone), decodes and resizes every image once in worker processes, and writes each split with
``litdata.optimize`` as chunks of raw ``uint8`` arrays (``DIR/train``, ``DIR/val``, ``DIR/test``), plus
``DIR/meta`` (a one-item LitData dataset holding the class names, image size, split sizes, labels and where each
image came from, so that a remote copy is read by LitData alone). An interrupted prepare resumes: finished splits
are kept, a split in progress resumes from LitData's checkpoints.
"""
from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import torch

from optik.core.errors import ConfigError, DataError
from optik.data.files import ImageFiles, Unreadable, check_listing, dataset_shape, default_workers
from optik.data.registry import _listing, manifest_table, split_labels
from optik.data.shards import FORMAT, META, is_shards


def _item(task: tuple[str, int, int], *, size: tuple[int, int], channels: int,
          dicom_window: tuple[float, float] | None = None) -> dict | None:
    """One prepared image: decoded, resized, ``uint8`` ``C x H x W``; None (left out) if it cannot be read."""
    path, label, position = task
    got = ImageFiles([path], torch.tensor([label]), size=size, channels=channels, dicom_window=dicom_window)[0]
    if isinstance(got, Unreadable):
        return None
    return {"image": got[0].numpy(), "label": int(label), "index": int(position)}


def _meta_item(task: int, *, meta: dict) -> dict:
    return {"meta": json.dumps(meta)}


def prepare(data: str, out: str | os.PathLike, *, image_size: int, val_fraction: float = 0.1,
            test_fraction: float = 0.2, split_seed: int = 0, workers: int | None = None, progress: bool = True,
            chunk_bytes: str = "64MB", group_column: str | None = None,
            dicom_window: tuple[float, float] | None = None) -> Path:
    """Write ``data`` (a folder tree or CSV manifest) as LitData shards in ``out``; see the module docstring.
    ``group_column`` splits by group (see :func:`~optik.data.registry.open_data`); a manifest's other columns are
    kept with the shards for subgroup audits.

    Returns the folder. Raises a DataError when the folder holds something else than optik shards.
    """
    import litdata as ld

    if image_size is None or not 4 <= int(image_size) <= 8192:
        raise ConfigError(f"expected --image-size from 4 to 8192 pixels, got {image_size!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "progress.json").is_file() and not is_shards(str(out)):
        raise DataError(f"expected --out to be a new folder or one `optik prepare` was writing, got {str(out)!r}, "
                        f"which holds other files")
    listing = _listing(data)
    table = manifest_table(listing, group_column)
    check_listing(listing, strict=False)
    channels, size = dataset_shape(listing.files, image_size=image_size)
    classes, labels = listing.classes, listing.label_indices()
    splits = split_labels(labels, name=listing.name, predefined=listing.predefined_splits(),
                          val_fraction=val_fraction, test_fraction=test_fraction, seed=split_seed,
                          groups=listing.columns[group_column] if group_column else None)
    workers = default_workers() if workers is None else max(1, workers)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, dict] = {}
    for name, idx in splits.items():
        folder = out / name
        if not (folder / "index.json").is_file():  # a finished split is kept: prepare resumes where it stopped
            tasks = [(str(listing.files[i]), int(labels[i]), int(i)) for i in idx.tolist()]
            ld.optimize(fn=functools.partial(_item, size=size, channels=channels, dicom_window=dicom_window),
                        inputs=tasks,
                        output_dir=str(folder), num_workers=min(workers, max(1, len(tasks))), chunk_bytes=chunk_bytes,
                        keep_data_ordered=True, reorder_files=False, use_checkpoint=True, verbose=progress,
                        start_method=_start_method())
        written[name] = _read_back(folder, listing, idx)
    meta = {"format": FORMAT, "name": listing.name, "classes": classes, "channels": channels,
            "image_size": list(size), "split_seed": split_seed, "val_fraction": val_fraction,
            "test_fraction": test_fraction, "group_column": group_column, "splits": written,
            "table": {src: table[src] for w in written.values() for src in w["sources"]} if table else {},
            **listing.meta}
    if (out / META).exists():
        import shutil

        shutil.rmtree(out / META)
    ld.optimize(fn=functools.partial(_meta_item, meta=meta), inputs=[0], output_dir=str(out / META), num_workers=1,
                chunk_bytes="256MB", verbose=False, start_method=_start_method())
    return out


def _start_method() -> str:
    """``fork`` where it is safe (Linux, no CUDA context yet: workers start in milliseconds instead of importing
    torch again), else LitData's default ``spawn``."""
    import sys

    return "fork" if sys.platform.startswith("linux") and not torch.cuda.is_initialized() else "spawn"


def _read_back(folder: Path, listing, idx: torch.Tensor) -> dict:
    """What a split's shards hold, in the split's order: the shard item of each readable image, its label and
    source; the files left out as unreadable."""
    import litdata as ld

    ds = ld.StreamingDataset(str(folder))
    position_of = {int(p): j for j, p in enumerate(idx.tolist())}
    at = [-1] * len(idx)
    labels = [-1] * len(idx)
    for k in range(len(ds)):
        item = ds[k]
        j = position_of[int(item["index"])]
        at[j], labels[j] = k, int(item["label"])
    kept = [j for j in range(len(idx)) if at[j] >= 0]
    files = [str(listing.files[i]) for i in idx.tolist()]
    return {"items": [at[j] for j in kept], "labels": [labels[j] for j in kept], "sources": [files[j] for j in kept],
            "unreadable": [files[j] for j in range(len(idx)) if at[j] < 0]}


__all__ = ["prepare"]
