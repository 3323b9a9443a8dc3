"""Seeded, stratified train / val / test splits."""
from __future__ import annotations

import numpy as np
import torch

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
