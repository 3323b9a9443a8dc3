"""Figures of what a classifier learned: first-layer filters, feature maps, heatmaps over images."""
from __future__ import annotations

import math
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from optik.core.errors import DataError  # noqa: E402


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Each map divided by its max (for display); a zero map stays zero. Shape: ``N x H x W`` >= 0."""
    peak = maps.flatten(1).amax(1).view(-1, *[1] * (maps.ndim - 1))
    return torch.where(peak > 0, maps / peak.clamp_min(1e-30), maps)


def overlay(image: np.ndarray, heat: np.ndarray, *, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """A heatmap blended over an image: ``(1 - alpha) * image + alpha * cmap(heat)``.

    Args:
        image: ``H x W`` (grayscale) or ``H x W x 3`` ``uint8``.
        heat: ``H x W`` in [0, 1] (values outside are clipped), e.g. a Grad-CAM map.
        alpha: weight of the heatmap, in [0, 1].
        cmap: a matplotlib colormap name.

    Shape:
        returns ``H x W x 3`` ``uint8``.
    """
    image, heat = np.asarray(image), np.asarray(heat, dtype=np.float64)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise DataError(f"expected a uint8 image H x W or H x W x 3, got {image.dtype} {image.shape}")
    if heat.shape != image.shape[:2]:
        raise DataError(f"expected a heatmap of the image's size {image.shape[:2]}, got {heat.shape}")
    if not 0 <= alpha <= 1:
        raise DataError(f"expected alpha in [0, 1], got {alpha}")
    rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image
    colours = matplotlib.colormaps[cmap](np.clip(np.nan_to_num(heat), 0, 1))[..., :3] * 255
    return np.clip(np.round((1 - alpha) * rgb + alpha * colours), 0, 255).astype(np.uint8)


def to_uint8_hwc(x: torch.Tensor) -> np.ndarray:
    """One image ``C x H x W`` in [0, 1] -> ``H x W`` (grey) or ``H x W x 3`` ``uint8``."""
    a = (x.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return a[..., 0] if a.shape[2] == 1 else a


def _grid(n: int, *, max_cols: int = 8) -> tuple[int, int]:
    cols = min(n, max_cols)
    return max(1, math.ceil(n / max(cols, 1))), max(cols, 1)


def filter_grid(weights: torch.Tensor, *, title: str = "First-layer filters"):
    """Convolution filters as small images, each min-max normalized on its own (colour when they read 3 input
    channels, else the mean over input channels in grey).

    Shape:
        ``weights``: ``out x in x kh x kw``.
    """
    w = weights.detach().float().cpu()
    w = w if w.shape[1] == 3 else w.mean(1, keepdim=True)
    lo = w.flatten(1).amin(1).view(-1, 1, 1, 1)
    hi = w.flatten(1).amax(1).view(-1, 1, 1, 1)
    w = torch.where(hi > lo, (w - lo) / (hi - lo).clamp_min(1e-30), torch.full_like(w, 0.5))
    rows, cols = _grid(len(w))
    fig, axes = plt.subplots(rows, cols, figsize=(1.1 * cols, 1.1 * rows + 0.5), squeeze=False,
                             constrained_layout=True)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < len(w):
            img = to_uint8_hwc(w[i])
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
            ax.set_title(str(i), fontsize=7)
    k = tuple(weights.shape[2:])
    fig.suptitle(f"{title}: {weights.shape[0]} filters {k[0]}x{k[1]}, {weights.shape[1]} input channel(s)"
                 f"{'' if weights.shape[1] in (1, 3) else ' (mean shown)'}", fontsize=9)
    return fig


def feature_map_grid(maps: torch.Tensor, *, layer: str, top: int = 16):
    """The ``top`` channels of one image's feature maps with the largest mean activation, largest first.

    Shape:
        ``maps``: ``C x h x w`` (one image).
    """
    if maps.ndim != 3:
        raise DataError(f"expected the feature maps of one image, C x h x w, got shape {tuple(maps.shape)}")
    maps = maps.detach().float().cpu()
    means = maps.flatten(1).mean(1)
    order = torch.argsort(means, descending=True, stable=True)[:top]
    rows, cols = _grid(len(order))
    fig, axes = plt.subplots(rows, cols, figsize=(1.5 * cols, 1.5 * rows + 0.5), squeeze=False,
                             constrained_layout=True)
    for ax, c in zip(axes.flat, order.tolist()):
        ax.imshow(maps[c].numpy(), cmap="viridis", interpolation="nearest")
        ax.set_title(f"ch {c}  {means[c]:.2g}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(f"layer {layer}: top {len(order)} of {len(maps)} channels by mean activation "
                 f"({maps.shape[1]}x{maps.shape[2]})", fontsize=9)
    return fig


def heatmap_grid(x: torch.Tensor, heat: torch.Tensor, probs: torch.Tensor, classes: Sequence[str], *,
                 labels: Sequence[int] | torch.Tensor | None = None,
                 targets: Sequence[int] | torch.Tensor | None = None, title: str = "", alpha: float = 0.5,
                 per_row: int = 4):
    """Image and heatmap side by side, ``per_row`` pairs to a row: the image titled with its true class when known,
    the heatmap over it titled with the predicted class and its probability (and the class the map explains
    where that is not the predicted one).

    Shape:
        ``x``: ``N x C x H x W`` in [0, 1]; ``heat``: ``N x H x W`` >= 0 (each map is shown divided by its max);
        ``probs``: ``N x K`` softmax probabilities.
    """
    heat = normalize_maps(heat.detach().float().cpu())
    n = len(x)
    per_row = max(1, min(per_row, n))
    rows = -(-n // per_row)
    fig, axes = plt.subplots(rows, 2 * per_row, figsize=(2.3 * 2 * per_row, 2.3 * rows + 0.4), squeeze=False,
                             constrained_layout=True)
    for ax in axes.flat:
        ax.axis("off")
    for i in range(n):
        left, right = axes[i // per_row, 2 * (i % per_row)], axes[i // per_row, 2 * (i % per_row) + 1]
        img = to_uint8_hwc(x[i])
        pred = int(probs[i].argmax())
        true = f"true {classes[int(labels[i])]}" if labels is not None else "image"
        left.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255, interpolation="nearest")
        left.set_title(true, fontsize=9)
        right.imshow(overlay(img, heat[i].numpy(), alpha=alpha), interpolation="nearest")
        shown = f"pred {classes[pred]}  {100 * float(probs[i, pred]):.1f} %"
        if targets is not None and int(targets[i]) != pred:
            shown += f"\nmap for {classes[int(targets[i])]}"
        right.set_title(shown, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
