"""Figures written to run folders: matplotlib without a display (Agg), saved atomically as PNG. Every layer that
draws saves through :func:`save_figure`."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from optik.core.io import atomic_write  # noqa: E402


def save_figure(fig, path: str | os.PathLike, *, dpi: int = 110) -> Path:
    """Save atomically as PNG and close the figure."""
    out = atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=dpi))
    plt.close(fig)
    return out


__all__ = ["save_figure"]
