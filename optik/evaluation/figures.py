"""Figures of an evaluation: the confusion matrix as a heatmap (counts and row-normalized)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from optik.core.io import atomic_write  # noqa: E402


def confusion_figure(cm: np.ndarray, classes: Sequence[str], *, title: str = "Confusion matrix"):
    """A figure with the counts (left) and the row-normalized rates (right); rows are true classes."""
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    k = len(classes)
    size = max(4.0, 0.45 * k + 2)
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size), constrained_layout=True)
    for ax, data, label, fmt in ((axes[0], cm, "count", "d"), (axes[1], norm, "share of true class", ".2f")):
        im = ax.imshow(data, cmap="Blues", vmin=0, vmax=data.max() if data.max() > 0 else 1)
        tilt = max(map(len, classes)) > 3 and k > 4  # long names would overlap
        ax.set_xticks(range(k), classes, rotation=45 if tilt else 0, ha="right" if tilt else "center")
        ax.set_yticks(range(k), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        fig.colorbar(im, ax=ax, shrink=0.8, label=label)
        if k <= 20:
            limit = data.max() / 2 if data.max() > 0 else 0.5
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", fontsize=8,
                            color="white" if data[i, j] > limit else "black")
    axes[0].set_title(f"{title} (counts)")
    axes[1].set_title(f"{title} (normalized by row)")
    return fig


def confusion_image(cm, *, cell: int = 16) -> np.ndarray:
    """The row-normalized confusion matrix as an ``H x W x 3`` uint8 heatmap (rows = true class), no text."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    rgb = (matplotlib.colormaps["Blues"](norm)[..., :3] * 255).astype(np.uint8)
    return np.repeat(np.repeat(rgb, cell, axis=0), cell, axis=1)


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Save atomically as PNG and close the figure."""
    out = atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=dpi))
    plt.close(fig)
    return out
