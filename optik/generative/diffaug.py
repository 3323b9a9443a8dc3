"""Differentiable augmentation for GANs on small data (Zhao et al. 2020, https://arxiv.org/abs/2006.10738).

The same random transform family is applied to real and generated images before the discriminator sees them,
and gradients flow through it to the generator. Each op is a pure function of the batch and a generator.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from optik.core import seed as random

DIFFAUG_OPS = ("color", "translation", "cutout")


def diff_augment(x: torch.Tensor, ops: Sequence[str], *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply ``ops`` (a subset of ``color``, ``translation``, ``cutout``, in that order) to ``x``.

    Shape: ``N x C x H x W`` in [0, 1] -> the same (values may leave [0, 1] under ``color``, as in the paper).
    """
    for op in ops:
        if op not in DIFFAUG_OPS:
            raise ValueError(f"expected DiffAugment ops from {DIFFAUG_OPS}, got {op!r}")
    n, dev = x.shape[0], x.device

    def rand(*shape):  # drawn on the generator's device (a CPU generator serves any device), then moved
        return random.uniform(shape, generator=generator, device=dev, dtype=x.dtype)

    if "color" in ops:  # brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5] (the paper's ranges)
        x = x + (rand(n, 1, 1, 1) - 0.5)
        if x.shape[1] > 1:
            m = x.mean(1, keepdim=True)
            x = (x - m) * (rand(n, 1, 1, 1) * 2) + m
        m = x.mean((1, 2, 3), keepdim=True)
        x = (x - m) * (rand(n, 1, 1, 1) + 0.5) + m
    if "translation" in ops:  # shift by up to 1/8 of the side, zero padding
        x = translate(x, rand(n, 2), pixels=(int(x.shape[2] * 0.125 + 0.5), int(x.shape[3] * 0.125 + 0.5)))
    if "cutout" in ops:  # one zeroed square of half the side per image
        x = _cutout(x, rand(n, 2), ratio=0.5)
    return x


def translate(x: torch.Tensor, u: torch.Tensor, *, pixels: int | tuple[int, int]) -> torch.Tensor:
    """Shift each image by whole pixels, ``(u * (2 * pixels + 1)).floor() - pixels`` down and right (``u`` in
    [0, 1), ``N x 2``), zeros coming in. Shape: ``N x C x H x W`` -> the same."""
    n, _, h, w = x.shape
    sh, sw = (pixels, pixels) if isinstance(pixels, int) else pixels
    dy = (u[:, 0] * (2 * sh + 1)).long().clamp_max(2 * sh) - sh  # integer shifts in [-sh, sh]
    dx = (u[:, 1] * (2 * sw + 1)).long().clamp_max(2 * sw) - sw
    padded = F.pad(x, (sw, sw, sh, sh))
    rows = (torch.arange(h, device=x.device).view(1, h) + sh - dy.view(n, 1))  # N x H source rows
    cols = (torch.arange(w, device=x.device).view(1, w) + sw - dx.view(n, 1))
    idx = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[idx, rows.view(n, h, 1), cols.view(n, 1, w)].permute(0, 3, 1, 2)


def _cutout(x: torch.Tensor, u: torch.Tensor, *, ratio: float) -> torch.Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = (u[:, 0] * (h + 1 - ch % 2)).long()  # centre of the square (the reference's offset convention)
    cx = (u[:, 1] * (w + 1 - cw % 2)).long()
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    y0, x0 = (cy - ch // 2).view(n, 1, 1), (cx - cw // 2).view(n, 1, 1)
    inside = (ys >= y0) & (ys < y0 + ch) & (xs >= x0) & (xs < x0 + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)
