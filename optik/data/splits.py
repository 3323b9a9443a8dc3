"""Seeded, stratified train / val / test splits."""
from __future__ import annotations

import numpy as np
import torch

from optik.core import seed as random
from optik.core.errors import DataError


def stratified_split(labels: torch.Tensor, sizes: dict[str, float | int], *, seed: int) -> dict[str, torch.Tensor]:
    """Split indices ``0..N-1`` into named parts with the class proportions of ``labels``.

    Args:
        labels: ``N`` integer labels.
        sizes: per split, a fraction of N (float < 1) or a count (int); the last split named takes the rest
            and must be given as ``None``-free remainder, e.g. ``{"test": 1000, "val": 0.1, "train": 1.0}``
            where ``1.0`` means "everything left".
        seed: fixes the split; the same labels and seed give the same indices on every machine.

    Returns:
        split name -> sorted ``int64`` index tensor. Each class is spread over the splits in proportion
        (largest-remainder rounding), so small classes still appear in every split they can.
    """
    y = np.asarray(labels)
    n = len(y)
    names = list(sizes)
    counts = {k: (int(v) if isinstance(v, int) else int(round(v * n))) for k, v in list(sizes.items())[:-1]}
    counts[names[-1]] = n - sum(counts.values())
    if min(counts.values()) < 0 or (counts[names[-1]] <= 0 and n):
        raise DataError(f"cannot split {n} images into {sizes}: requested sizes exceed the dataset")
    rng = np.random.default_rng(seed)
    classes, per_class = np.unique(y, return_counts=True)
    # Per-class quota for each split by largest remainder, so totals match the requested counts exactly.
    quota = {}
    for k in names[:-1]:
        exact = per_class * counts[k] / max(n, 1)
        q = np.floor(exact).astype(int)
        short = counts[k] - q.sum()
        q[np.argsort(-(exact - q), kind="stable")[:short]] += 1
        quota[k] = q
    out: dict[str, list[np.ndarray]] = {k: [] for k in names}
    for ci, c in enumerate(classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        start = 0
        for k in names[:-1]:
            take = min(quota[k][ci], len(idx) - start)
            out[k].append(idx[start:start + take])
            start += take
        out[names[-1]].append(idx[start:])
    return {k: torch.from_numpy(np.sort(np.concatenate(v))).long() for k, v in out.items()}


def stratified_group_split(labels: torch.Tensor, groups, sizes: dict[str, float | int], *, seed: int
                           ) -> dict[str, torch.Tensor]:
    """:func:`stratified_split` that keeps every group (a patient's images) in one split.

    Groups are placed one at a time, largest first (ties in a seeded random order), each into the split whose
    per-class counts it brings closest to that split's targets (the requested size times each class's share of the
    whole): the L1 distance to the targets grows least there, and between equals the split furthest below its
    size takes it. Label proportions then follow the whole as far as the groups allow (a patient whose images
    carry different labels moves them together).

    Args:
        labels: ``N`` integer labels. groups: ``N`` group keys (any hashable, e.g. patient ids as strings).
        sizes: as for :func:`stratified_split` (the last split takes the rest).
        seed: fixes the split.
    """
    y = np.asarray(labels)
    keys, g = np.unique(np.asarray([str(v) for v in groups], dtype=object), return_inverse=True)
    if len(g) != len(y):
        raise DataError(f"expected a group for each of the {len(y)} images, got {len(g)}")
    n, names = len(y), list(sizes)
    counts = {k: (int(v) if isinstance(v, int) else int(round(v * n))) for k, v in list(sizes.items())[:-1]}
    counts[names[-1]] = n - sum(counts.values())
    if min(counts.values()) < 0 or (counts[names[-1]] <= 0 and n):
        raise DataError(f"cannot split {n} images into {sizes}: requested sizes exceed the dataset")
    if len(keys) < sum(c > 0 for c in counts.values()):
        raise DataError(f"expected at least {sum(c > 0 for c in counts.values())} groups to fill the splits "
                        f"{', '.join(k for k in names if counts[k] > 0)}, got {len(keys)}")
    classes = np.unique(y)
    per_group = np.zeros((len(keys), len(classes)), dtype=np.int64)
    np.add.at(per_group, (g, np.searchsorted(classes, y)), 1)
    share = per_group.sum(0) / max(n, 1)
    target = np.array([[counts[k] * s for s in share] for k in names])  # splits x classes
    have = np.zeros_like(target)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(keys))
    order = order[np.argsort(-per_group[order].sum(1), kind="stable")]
    place = np.empty(len(keys), dtype=np.int64)
    size = np.array([counts[k] for k in names], dtype=np.float64)
    for gi in order:
        row = per_group[gi]
        growth = np.abs(have + row - target).sum(1) - np.abs(have - target).sum(1)
        room = (size - have.sum(1)) / np.maximum(size, 1)  # tie-break: the emptiest split relative to its size
        growth[size == 0] = np.inf
        best = np.lexsort((-room, growth))[0]
        place[gi] = best
        have[best] += row
    where = place[g]
    return {k: torch.from_numpy(np.flatnonzero(where == i)).long() for i, k in enumerate(names)}


def select_classes(ds, splits: dict[str, torch.Tensor], classes: list[str]):
    """Keep only ``classes`` (in that order, relabelled ``0..k-1``) in the dataset and every split.

    Splits are made on the whole dataset first, so a class keeps exactly the images it had in each split
    (``mnist5k`` digits 5-9 are tested on the digits 5-9 of the usual 1,000 test images).
    """
    from optik.data.dataset import ImageDataset

    unknown = [c for c in classes if c not in ds.classes]
    if unknown or len(set(classes)) != len(classes) or len(classes) < 2:
        raise DataError(f"expected at least 2 distinct class names of {ds.name!r} ({', '.join(ds.classes)}), "
                        f"got {', '.join(classes)}" + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    relabel = torch.full((len(ds.classes),), -1, dtype=torch.long)
    relabel[[ds.classes.index(c) for c in classes]] = torch.arange(len(classes))
    keep = torch.nonzero(relabel[ds.labels] >= 0).flatten()
    position = torch.full((len(ds),), -1, dtype=torch.long)
    position[keep] = torch.arange(len(keep))
    subset = ImageDataset(ds.images[keep], relabel[ds.labels[keep]], list(classes), ds.name,
                          sources=[ds.sources[i] for i in keep.tolist()] if ds.sources else None, meta=dict(ds.meta))
    new_splits = {}
    for name, idx in splits.items():
        mapped = position[idx]
        new_splits[name] = mapped[mapped >= 0]
    return subset, new_splits


def limit_per_class(labels: torch.Tensor, idx: torch.Tensor, n: int, *, seed: int) -> torch.Tensor:
    """``n`` indices of each class drawn (seeded) from ``idx``; a class with fewer than ``n`` is an error."""
    y = labels[idx].numpy()
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(y):
        pool = idx.numpy()[y == c]
        if len(pool) < n:
            raise DataError(f"expected at least {n} training images of class {int(c)}, the train split has {len(pool)}")
        chosen.append(rng.choice(pool, n, replace=False))
    return torch.from_numpy(np.sort(np.concatenate(chosen))).long()


def random_subset(idx: torch.Tensor, n: int | None, *, seed: int) -> torch.Tensor:
    """``n`` of the indices ``idx``, drawn at random with ``seed`` and kept in order; all of them when ``n`` is
    None or not smaller. Splits are stored sorted, and datasets are often sorted by class, so the first ``n``
    would be a few classes only."""
    if n is None or n >= len(idx):
        return idx
    pick = random.randperm(len(idx), generator=torch.Generator().manual_seed(seed))[:n]
    return idx[pick].sort().values
