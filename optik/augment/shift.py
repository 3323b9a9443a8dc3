"""Integer-pixel translation of a whole batch, each image by its own offset, zero fill."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def shift(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Translate image ``i`` by ``(dy[i], dx[i])`` pixels (positive = down / right), filling with zeros.

    Shape: ``x`` is ``N x C x H x W``; ``dy``, ``dx`` are int64 ``N`` with ``|d| <= max`` of either.
    """
    n, c, h, w = x.shape
    p = int(max(dy.abs().max(), dx.abs().max(), 0)) if n else 0
    if p == 0:
        return x
    padded = F.pad(x, (p, p, p, p))
    rows = (p - dy).view(n, 1, 1, 1) + torch.arange(h, device=x.device).view(1, 1, h, 1)
    cols = (p - dx).view(n, 1, 1, 1) + torch.arange(w, device=x.device).view(1, 1, 1, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1, 1)
    chan = torch.arange(c, device=x.device).view(1, c, 1, 1)
    return padded[batch, chan, rows, cols]


def random_shift(x: torch.Tensor, max_px: int, *, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by independent uniform offsets in ``[-max_px, max_px]`` on both axes.

    The offsets are drawn on the CPU from ``generator`` (so the result does not depend on the device).
    """
    if max_px <= 0:
        return x
    d = torch.randint(-max_px, max_px + 1, (2, len(x)), generator=generator).to(x.device)
    return shift(x, d[0], d[1])
