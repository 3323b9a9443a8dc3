"""Prepared shards read back as split handles (written by :mod:`optik.data.prepare`, ``optik prepare``).

``optik train --data DIR`` (a local folder or an object-store URL that LitData reads, ``s3://...``) streams the
shards with :class:`litdata.StreamingDataset`, reading items by index in ``DataLoader`` workers, in the same
seeded :class:`~optik.data.batches.BatchOrder` as every other source, so shards, folders and memory give the same
batches. Ranks read disjoint shares of it (the order is sharded by rank).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from optik.core.errors import DataError
from optik.data.files import Unreadable
from optik.data.handles import DataHandle, WorkerSplit

META = "meta"
FORMAT = "optik.Shards/1"
SPLITS = ("train", "val", "test")
REMOTE = ("s3://", "gs://", "gcs://", "azure://", "abfs://", "hf://", "http://", "https://")


def is_remote(path: str) -> bool:
    return str(path).startswith(REMOTE)


def is_shards(path: str) -> bool:
    """Whether ``path`` holds shards written by ``optik prepare`` (a remote URL is taken to, and checked when read)."""
    return is_remote(path) or (Path(path) / META / "index.json").is_file()


def read_meta(path: str) -> dict:
    """The description ``optik prepare`` stored next to the shards."""
    import litdata as ld

    try:
        meta = json.loads(ld.StreamingDataset(_join(path, META))[0]["meta"])
    except Exception as e:  # noqa: BLE001 - whatever LitData raises for a missing or foreign folder
        raise DataError(f"expected shards written by `optik prepare` in {path!r}, but its {META}/ cannot be read "
                        f"({type(e).__name__}: {e})") from None
    if meta.get("format") != FORMAT:
        raise DataError(f"expected shards of format {FORMAT} in {path!r}, got {meta.get('format')!r}")
    return meta


def _join(path: str, name: str) -> str:
    return f"{str(path).rstrip('/')}/{name}" if is_remote(path) else str(Path(path) / name)


def open_shards(path: str, *, workers: int | None = None) -> DataHandle:
    """Shards written by ``optik prepare`` as split handles."""
    meta = read_meta(path)
    classes, channels, size = meta["classes"], int(meta["channels"]), tuple(meta["image_size"])
    splits = {name: ShardSplit(_join(path, name), s["items"], torch.tensor(s["labels"], dtype=torch.long),
                               classes=classes, channels=channels, image_size=size, sources=s["sources"],
                               workers=workers)
              for name, s in meta["splits"].items()}
    extra = {k: meta[k] for k in ("manifest_sha256", "outside_manifest_folder", "val_fraction", "test_fraction",
                                  "split_seed", "group_column") if k in meta}
    return DataHandle(str(path), classes, channels, size, splits, "shards",
                      {"prepared_from": meta["name"], **extra}, meta.get("table") or {})


def _open_streaming(folder: str):
    """A LitData StreamingDataset read item by item: optik asks for items in its own (shuffled) order, and
    LitData's default decodes a window of neighbours per read, 120x slower in that order (measured: 410 against
    49,000 items/s on 128-pixel images)."""
    import inspect

    import litdata as ld

    per_item = {"batch_decode": 0} if "batch_decode" in inspect.signature(ld.StreamingDataset).parameters else {}
    return ld.StreamingDataset(folder, **per_item)


class ShardItems(torch.utils.data.Dataset):
    """Items of one split's shards by position (``items[i]`` is the shard index of position ``i``); the
    StreamingDataset is opened in the process that reads (each DataLoader worker its own)."""

    def __init__(self, folder: str, items: Sequence[int], labels: torch.Tensor):
        self.folder, self.items, self.labels = folder, list(items), labels
        self._ds = None

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Any:
        if self._ds is None:
            self._ds = _open_streaming(self.folder)
        i = int(i)
        try:
            item = self._ds[int(self.items[i])]
        except Exception as e:  # noqa: BLE001 - a chunk that cannot be read: skipped, named, like a bad file
            return Unreadable(i, f"{self.folder} item {self.items[i]}: {type(e).__name__}: {e}")
        return torch.from_numpy(np.ascontiguousarray(item["image"])), self.labels[i], i


class ShardSplit(WorkerSplit):
    """One split of prepared shards, read through LitData in worker processes."""

    kind = "shards"

    def __init__(self, folder: str, items: Sequence[int], labels: torch.Tensor, *, classes, channels, image_size,
                 sources=None, workers: int | None = None):
        super().__init__(labels, classes=classes, channels=channels, image_size=image_size, sources=sources,
                         workers=workers)
        self.folder, self.items = folder, list(items)

    def _dataset(self) -> ShardItems:
        return ShardItems(self.folder, self.items, self.labels)

    def subset(self, positions, *, labels=None, classes=None) -> "ShardSplit":
        positions = torch.as_tensor(positions, dtype=torch.long).tolist()
        return ShardSplit(self.folder, [self.items[i] for i in positions],
                          self.labels[positions] if labels is None else labels, classes=classes or self.classes,
                          channels=self.channels, image_size=self.image_size,
                          sources=[self.sources[i] for i in positions] if self.sources else None,
                          workers=self.workers)


__all__ = ["FORMAT", "META", "ShardSplit", "is_shards", "open_shards", "read_meta"]
