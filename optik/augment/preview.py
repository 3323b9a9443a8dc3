"""The lecture's picture of augmentation: one image under each knob, and under your own settings."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from optik.augment.generator import FILL_MODES, AugmentConfig, apply, augment
from optik.core.seed import generator
from optik.data.folder import decode_image


def _params(n: int, **values) -> dict:
    base = {"angle": 0.0, "dy": 0.0, "dx": 0.0, "shear": 0.0, "zy": 1.0, "zx": 1.0, "flip_h": False,
            "flip_v": False, "brightness": 1.0, "channel_shift": 0.0}
    out = {k: torch.tensor([v] * n) for k, v in base.items()}
    for k, v in values.items():
        out[k] = torch.tensor(v)
    return out


def preview_rows(x: torch.Tensor, cfg: AugmentConfig, *, seed: int = 0, samples: int = 6) -> list[tuple]:
    """``(row title, [(caption, image C x H x W)])`` for each knob at fixed values, then ``samples`` random
    draws from ``cfg``. ``x`` is one image ``1 x C x H x W`` in [0, 1]."""
    h, w = x.shape[2:]
    rows = []

    def row(title, captions, params, fill="nearest", **extra):
        n = len(captions)
        out = apply(x.expand(n, -1, -1, -1).contiguous(), params, AugmentConfig(fill_mode=fill, **extra))
        rows.append((title, list(zip(captions, out.clamp(0, 1)))))

    angles = [-40.0, -20.0, 0.0, 20.0, 40.0]
    row("rotation_range", [f"{a:+.0f} deg" for a in angles], _params(5, angle=angles))
    zooms = [0.7, 1.0, 1.3, 1.6]
    for mode in FILL_MODES:
        row(f"zoom_range, fill_mode={mode}", [f"zoom {z}" for z in zooms],
            _params(4, zy=zooms, zx=zooms), fill=mode, cval=0.5)
    shifts = [(-0.2, 0.0), (0.2, 0.0), (0.0, -0.2), (0.0, 0.2)]
    row("width/height_shift_range", [f"dx {a:+.1f}, dy {b:+.1f}" for a, b in shifts],
        _params(4, dx=[a * w for a, _ in shifts], dy=[b * h for _, b in shifts]))
    shears = [-30.0, -15.0, 15.0, 30.0]
    row("shear_range", [f"{s:+.0f} deg" for s in shears], _params(4, shear=shears))
    levels = [0.5, 0.8, 1.2, 1.5]
    row("brightness_range", [f"x{b}" for b in levels], _params(4, brightness=levels), brightness_range=(0.5, 1.5))
    row("flips", ["original", "horizontal", "vertical", "both"],
        _params(4, flip_h=[False, True, False, True], flip_v=[False, False, True, True]),
        horizontal_flip=True, vertical_flip=True)
    drawn, _ = augment(x.expand(samples, -1, -1, -1).contiguous(), cfg, generator=generator(seed, "preview"))
    rows.append(("your settings (random draws)", [(f"sample {i + 1}", im) for i, im in enumerate(drawn.clamp(0, 1))]))
    return rows


def preview_figure(x: torch.Tensor, cfg: AugmentConfig, *, title: str, seed: int = 0):
    """The preview grid of one image ``1 x C x H x W`` in [0, 1]: a row per knob, then random draws of ``cfg``."""
    import matplotlib.pyplot as plt

    rows = preview_rows(x, cfg, seed=seed)
    cols = max(len(r[1]) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.0 * cols, 2.2 * len(rows)), squeeze=False)
    for axrow, (row_title, cells) in zip(axes, rows):
        for j, ax in enumerate(axrow):
            ax.axis("off")
            if j < len(cells):
                caption, im = cells[j]
                im = im.permute(1, 2, 0).numpy()
                ax.imshow(im[..., 0] if im.shape[2] == 1 else im, cmap="gray", vmin=0, vmax=1)
                ax.set_title(caption, fontsize=8)
        axrow[0].text(-0.15, 0.5, row_title, transform=axrow[0].transAxes, rotation=90, ha="right", va="center",
                      fontsize=8)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1, 0.98))
    return fig


def save_preview(image: str | os.PathLike, cfg: AugmentConfig, out: str | os.PathLike, *, seed: int = 0) -> Path:
    """Decode ``image`` and write the preview grid to ``out`` (PNG)."""
    from optik.core.figures import save_figure

    a = decode_image(image)
    x = torch.from_numpy(np.array(a if a.ndim == 3 else a[..., None])).permute(2, 0, 1)
    fig = preview_figure(x[None].float() / 255, cfg, title=f"augmentation preview: {Path(image).name}", seed=seed)
    return save_figure(fig, out)
