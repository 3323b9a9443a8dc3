"""A dataset as a handle, not a tensor: splits that know their labels and sources, and yield ``uint8`` batches.

Two sources stand behind the same door:

- :class:`MemorySplit`: the images decoded once into one ``uint8`` tensor (built-in datasets, and folders whose
  decoded, resized size fits ``max_memory_gb``); batches by index, on the training device.
- :class:`FileSplit`: image files decoded and resized in ``DataLoader`` worker processes as batches are needed
  (folders and manifests larger than memory); ``uint8`` batches travel in pinned memory and are converted to float
  on the device. Unreadable files are skipped, counted, and listed at the end.

Both are ordered by :class:`~optik.data.batches.BatchOrder` (seeded by ``(seed, epoch)``, sharded by rank,
resumable at a batch), so a run sees the same images in the same order whichever source holds them. Nothing
outside ``optik.data`` indexes images: it asks a split for batches, or for a few images by position (``take``).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import numpy as np
import torch

from optik.core.errors import DataError
from optik.data.batches import BatchOrder
from optik.data.files import ImageFiles, collate, default_workers


class Split:
    """One split: ``labels`` and ``sources`` known without decoding; images by position or in batches.

    Attributes:
        labels: ``N`` int64 class indices.
        classes: class names (index = label); channels, image_size: of every image it yields.
        sources: where each image comes from (file paths), or None for built-in data.
    """

    kind = "split"

    def __init__(self, labels: torch.Tensor, *, classes: Sequence[str], channels: int, image_size: Sequence[int],
                 sources: Sequence[str] | None = None):
        self.labels = labels.long()
        self.classes, self.channels = list(classes), int(channels)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.sources = list(sources) if sources is not None else None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, positions: Sequence[int] | torch.Tensor) -> torch.Tensor:
        """``uint8`` ``n x C x H x W`` images at these positions of the split (a few: examples, galleries)."""
        raise NotImplementedError

    def subset(self, positions: torch.Tensor, *, labels: torch.Tensor | None = None,
               classes: Sequence[str] | None = None) -> "Split":
        """The split restricted to ``positions`` (optionally relabelled)."""
        raise NotImplementedError

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int = 0, drop_last: bool = False,
                rank: int = 0, world_size: int = 1, device: str | torch.device | None = None,
                workers: int | None = None) -> "Batches":
        """An iterable of ``(uint8 images, labels)`` batches (re-iterable; ``set_epoch`` / ``set_start`` pick the
        epoch's order and the batch to start from)."""
        raise NotImplementedError


class Batches:
    """Batches of a split in a :class:`BatchOrder`; iterating again gives the next pass.

    Resumable mid-epoch (Lightning's ``state_dict`` / ``load_state_dict`` protocol): the state is the epoch and the
    number of batches the training step has finished (``consumed``, which the task sets: a loader runs ahead of the
    step by its prefetch), and a restored pass starts at the next batch of the same order.
    """

    def __init__(self, order: BatchOrder):
        self.order = order
        self.consumed = 0

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.order.epoch:  # a new epoch starts at its first batch, whatever a restored state said
            self.order.start = 0
        self.order.set_epoch(epoch)
        self.consumed = 0

    def set_start(self, batch: int) -> None:
        """Start the next pass at this batch of the epoch's order (a run resumed mid-epoch)."""
        self.order.start = batch

    def state_dict(self) -> dict:
        return {"epoch": self.order.epoch, "consumed": self.consumed}

    def load_state_dict(self, state: dict) -> None:
        self.order.set_epoch(int(state["epoch"]))
        self.consumed = int(state["consumed"])
        self.set_start(self.consumed)

    def __len__(self) -> int:
        return len(self.order)


# ------------------------------------------------------------------------------------------------ in memory
class MemorySplit(Split):
    """Positions ``index`` of one ``uint8`` ``N x C x H x W`` tensor (shared with the other splits, not copied)."""

    kind = "memory"

    def __init__(self, images: torch.Tensor, index: torch.Tensor, labels: torch.Tensor, *, classes: Sequence[str],
                 sources: Sequence[str] | None = None):
        super().__init__(labels, classes=classes, channels=images.shape[1], image_size=images.shape[2:],
                         sources=sources)
        self.images, self.index = images, index.long()

    def take(self, positions) -> torch.Tensor:
        return self.images[self.index[torch.as_tensor(positions, dtype=torch.long)]]

    def subset(self, positions, *, labels=None, classes=None) -> "MemorySplit":
        positions = torch.as_tensor(positions, dtype=torch.long)
        return MemorySplit(self.images, self.index[positions], self.labels[positions] if labels is None else labels,
                           classes=classes or self.classes,
                           sources=[self.sources[i] for i in positions.tolist()] if self.sources else None)

    def batches(self, batch_size, *, shuffle=False, seed=0, drop_last=False, rank=0, world_size=1, device=None,
                workers=None) -> "MemoryBatches":
        order = BatchOrder(len(self), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, rank=rank,
                           world_size=world_size)
        return MemoryBatches(self, order, device=device)


class MemoryBatches(Batches):
    """Batches by index over the split's images, moved to ``device`` once."""

    def __init__(self, split: MemorySplit, order: BatchOrder, *, device=None):
        super().__init__(order)
        images, labels = split.images[split.index], split.labels  # this split's images only, then on the device
        self.images = images.to(device) if device is not None else images
        self.labels = labels.to(self.images.device)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in self.order:
            b = b.to(self.images.device)
            yield self.images[b], self.labels[b]


# ------------------------------------------------------------------------------------------------ files
class WorkerSplit(Split):
    """A split whose items are decoded one by one in ``DataLoader`` worker processes as batches are drawn (image
    files here; prepared shards in :mod:`optik.data.shards`). Subclasses give the per-item dataset and subsets."""

    def __init__(self, labels: torch.Tensor, *, classes: Sequence[str], channels: int, image_size: Sequence[int],
                 sources: Sequence[str] | None = None, workers: int | None = None, strict: bool = False):
        super().__init__(labels, classes=classes, channels=channels, image_size=image_size, sources=sources)
        self.workers = default_workers() if workers is None else workers
        self.strict = strict
        self.skipped: dict[int, str] = {}  # position -> why, as found while iterating

    def _dataset(self) -> torch.utils.data.Dataset:
        """Item ``i``: ``(uint8 C x H x W, label, i)``, or an :class:`~optik.data.files.Unreadable`."""
        raise NotImplementedError

    def take(self, positions) -> torch.Tensor:
        data = self._dataset()
        images, _, _, bad = collate([data[int(i)] for i in torch.as_tensor(positions).tolist()])
        if bad:
            raise DataError("; ".join(b.reason for b in bad))
        return images

    def batches(self, batch_size, *, shuffle=False, seed=0, drop_last=False, rank=0, world_size=1, device=None,
                workers=None) -> "FileBatches":
        order = BatchOrder(len(self), batch_size, shuffle=shuffle, seed=seed, drop_last=drop_last, rank=rank,
                           world_size=world_size)
        return FileBatches(self, order, workers=self.workers if workers is None else workers,
                           pin_memory=device is not None and torch.device(device).type == "cuda")


class FileSplit(WorkerSplit):
    """Image files, decoded and resized to ``image_size`` in worker processes as batches are drawn."""

    kind = "files"

    def __init__(self, files: Sequence[str], labels: torch.Tensor, *, classes: Sequence[str], channels: int,
                 image_size: Sequence[int], workers: int | None = None, strict: bool = False,
                 dicom_window: tuple[float, float] | None = None):
        super().__init__(labels, classes=classes, channels=channels, image_size=image_size, sources=files,
                         workers=workers, strict=strict)
        self.dicom_window = dicom_window

    def _dataset(self) -> ImageFiles:
        return ImageFiles(self.sources, self.labels, size=self.image_size, channels=self.channels,
                          dicom_window=self.dicom_window)

    def subset(self, positions, *, labels=None, classes=None) -> "FileSplit":
        positions = torch.as_tensor(positions, dtype=torch.long)
        return FileSplit([self.sources[i] for i in positions.tolist()],
                         self.labels[positions] if labels is None else labels, classes=classes or self.classes,
                         channels=self.channels, image_size=self.image_size, workers=self.workers, strict=self.strict,
                         dicom_window=self.dicom_window)


class FileBatches(Batches):
    """A ``DataLoader`` over the split's files: each worker process decodes whole batches; the order comes from the
    :class:`BatchOrder` in the main process. Batches arrive as ``uint8`` (4x smaller than float), pinned when the
    training device is a GPU; float conversion happens on the device.

    Workers are not persistent: forked afresh for each pass (milliseconds on Linux), they end with it. Persistent
    workers re-prime their prefetch when a pass starts, and a pass Lightning starts but never runs (after the last
    epoch) left them blocked with undelivered batches: 5 s each to shut down at garbage collection.
    """

    def __init__(self, split: WorkerSplit, order: BatchOrder, *, workers: int, pin_memory: bool):
        super().__init__(order)
        self.split = split
        self.loader = torch.utils.data.DataLoader(
            split._dataset(), batch_sampler=order, num_workers=workers, collate_fn=collate, pin_memory=pin_memory,
            prefetch_factor=4 if workers > 0 else None)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels, _, bad in self.loader:
            if bad:
                if self.split.strict:
                    raise DataError(f"unreadable image (strict mode): {bad[0].reason}")
                self.split.skipped.update((b.index, b.reason) for b in bad)
            if len(labels):
                yield images, labels


# ------------------------------------------------------------------------------------------------ helpers
def image_batches(images: "torch.Tensor | Split", batch_size: int) -> Iterator[torch.Tensor]:
    """The images of a tensor (``N x C x H x W``) or of a split, ``batch_size`` at a time, in order: what code that
    passes over a set of images once (features, statistics, encodings) iterates, whatever holds them."""
    if isinstance(images, Split):
        for x, _ in images.batches(batch_size):
            yield x
    else:
        for start in range(0, len(images), batch_size):
            yield images[start:start + batch_size]


def at_most(split: Split, n: int | None, *, seed: int = 0) -> Split:
    """``split`` itself when it has at most ``n`` images (or ``n`` is None), else ``n`` of them drawn with
    ``seed``, kept in the split's order: a reference set whose cost does not grow with the dataset."""
    if n is None or len(split) <= n:
        return split
    rng = np.random.default_rng(seed)
    return split.subset(torch.from_numpy(np.sort(rng.choice(len(split), n, replace=False))))


# ------------------------------------------------------------------------------------------------ statistics
@torch.no_grad()
def channel_stats(split: Split, *, max_images: int = 2000, seed: int = 0, batch_size: int = 256
                  ) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of a split's pixels in [0, 1] units, in one streaming pass (float64 sums; no
    float copy of the split). Splits in memory use every image; files a seeded sample of ``max_images`` (the
    statistics of 2,000 images are within about 1e-3 of the whole set's). The std is floored at 1e-3."""
    if not isinstance(split, MemorySplit):
        split = at_most(split, max_images, seed=seed)
    c = split.channels
    n, total, squares = 0, torch.zeros(c, dtype=torch.float64), torch.zeros(c, dtype=torch.float64)
    for images, _ in split.batches(batch_size):
        x = images.double().div_(255).transpose(0, 1).reshape(c, -1)
        n += x.shape[1]
        total += x.sum(1)
        squares += x.square().sum(1)
    if n < 2:
        raise DataError(f"expected training images to compute the pixel statistics from, got {len(split)}")
    mean = total / n
    var = ((squares - n * mean.square()) / (n - 1)).clamp_min(0)
    return mean.tolist(), var.sqrt().clamp_min(1e-3).tolist()


# ------------------------------------------------------------------------------------------------ the dataset
@dataclass
class DataHandle:
    """A dataset opened for a run: its splits as handles, and what it is.

    Attributes:
        name: the dataset's name or path. classes, channels, image_size: of every image.
        splits: ``train`` / ``val`` / ``test`` handles.
        source: ``memory`` (decoded into one tensor), ``files`` (decoded in workers as needed) or ``shards``
            (prepared by ``optik prepare``, read through LitData).
        meta: facts recorded in a run's config.yaml (a manifest's SHA-256, images outside its folder).
        table: a manifest's other columns by source (``{path: {column: value}}``; empty without them): what
            subgroup audits and attribute probes read, through :meth:`column`.
    """

    name: str
    classes: list[str]
    channels: int
    image_size: tuple[int, int]
    splits: dict[str, Split]
    source: str = "memory"
    meta: dict = field(default_factory=dict)
    table: dict[str, dict[str, str]] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return sum(len(s) for s in self.splits.values())

    def describe(self) -> str:
        sizes = ", ".join(f"{k} {len(v)}" for k, v in self.splits.items())
        return (f"{self.name}: {len(self)} images ({sizes}), {len(self.classes)} classes, {self.channels}x"
                f"{self.image_size[0]}x{self.image_size[1]}, "
                f"{ {'memory': 'in memory', 'files': 'streamed from files'}.get(self.source, 'streamed from shards')}")

    def summary(self) -> dict:
        """What a run's config.yaml records about its data."""
        return {"name": self.name, "n": len(self), "classes": self.classes, "channels": self.channels,
                "image_size": list(self.image_size), "splits": {k: len(v) for k, v in self.splits.items()},
                "source": self.source, **self.meta}

    def select_classes(self, names: list[str]) -> "DataHandle":
        """Keep only these classes, in this order, relabelled ``0..k-1``, in every split (splits are made on the
        whole dataset first, so a class keeps exactly the images it had in each split)."""
        unknown = [c for c in names if c not in self.classes]
        if unknown or len(set(names)) < 2 or len(set(names)) != len(names):
            raise DataError(f"expected at least 2 distinct class names of {self.name!r} ({', '.join(self.classes)}), "
                            f"got {', '.join(names)}" + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
        relabel = torch.full((len(self.classes),), -1, dtype=torch.long)
        relabel[[self.classes.index(c) for c in names]] = torch.arange(len(names))
        splits = {}
        for k, split in self.splits.items():
            new = relabel[split.labels]
            keep = (new >= 0).nonzero().flatten()
            splits[k] = split.subset(keep, labels=new[keep], classes=names)
        return DataHandle(self.name, list(names), self.channels, self.image_size, splits, self.source, dict(self.meta),
                          self.table)

    @property
    def columns(self) -> list[str]:
        """The manifest columns beyond ``path`` and ``label`` (empty for folders and built-in data)."""
        return list(next(iter(self.table.values()), {}))

    def column(self, split: str, name: str) -> list[str]:
        """The manifest column ``name`` for every image of a split, in the split's order ("" where a row left it
        empty)."""
        if name not in self.columns:
            raise DataError(f"expected a column of {self.name!r}'s manifest, got {name!r}; "
                            + (f"its columns are {', '.join(self.columns)}" if self.columns else
                               "it has none: subgroups and attributes are read from extra columns of a CSV "
                               "manifest (path,label,patient_id,sex,...)"))
        sources = self.splits[split].sources or []
        return [self.table[s][name] for s in sources]

    def split_rows(self, group_column: str | None = None) -> Iterator[tuple[str, str, str, str | None]]:
        """``(source, label, split, group)`` for every image: what a run's ``splits.csv`` lists. Built-in images
        are named ``<dataset>[<index>]``."""
        for name, split in self.splits.items():
            sources = split.sources or [f"{self.name}[{int(i)}]" for i in getattr(split, "index", range(len(split)))]
            for src, label in zip(sources, split.labels.tolist()):
                group = self.table.get(src, {}).get(group_column) if group_column else None
                yield src, self.classes[label], name, group

    def warn_skipped(self) -> None:
        """Name the files found unreadable while streaming (each once)."""
        found = [f"{s.sources[i] if s.sources else i}: {why}" for s in self.splits.values()
                 for i, why in sorted(getattr(s, "skipped", {}).items())]
        if found:
            from optik.data.folder import SkippedImagesWarning

            warnings.warn(f"skipped {len(found)} unreadable file(s) while streaming:\n  " + "\n  ".join(found),
                          SkippedImagesWarning, stacklevel=2)


def write_splits(path, handle: DataHandle, *, group_column: str | None = None) -> None:
    """``splits.csv``: ``source,label,split`` (and the group column) for every image of a run's data, so that a
    reviewer sees exactly which images were trained, validated and tested on. Written row by row."""
    import csv

    from optik.core.io import atomic_write

    def write(tmp) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            out = csv.writer(f)
            out.writerow(["source", "label", "split"] + ([group_column] if group_column else []))
            for source, label, split, group in handle.split_rows(group_column):
                out.writerow([source, label, split] + ([group] if group_column else []))

    atomic_write(path, write)


def estimated_bytes(n: int, channels: int, size: Sequence[int]) -> int:
    """The decoded, resized size of ``n`` images: what keeping them in memory costs."""
    return int(n) * int(channels) * int(size[0]) * int(size[1])


def memory_fits(n: int, channels: int, size: Sequence[int], max_memory_gb: float) -> bool:
    return estimated_bytes(n, channels, size) <= max_memory_gb * 2**30


__all__ = ["at_most", "image_batches", "write_splits", "Batches", "DataHandle", "FileBatches", "FileSplit", "MemoryBatches", "MemorySplit", "Split", "WorkerSplit",
           "channel_stats", "estimated_bytes", "memory_fits"]
