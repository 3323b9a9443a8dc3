"""Random rotation, zoom and shift of a whole batch: one affine matrix per image, one sampling pass."""
from __future__ import annotations


import torch
import torch.nn.functional as F


def affine_matrices(angle_deg: torch.Tensor, scale: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor,
                    size: tuple[int, int]) -> torch.Tensor:
    """``N x 2 x 3`` matrices for ``F.affine_grid`` (output -> input, normalized coordinates).

    Each image is rotated by ``angle_deg`` (counter-clockwise on screen), scaled by ``scale`` (> 1 enlarges)
    about its centre, then moved by ``(dy, dx)`` pixels (down / right).
    """
    h, w = size
    a = torch.deg2rad(angle_deg.float())
    cos, sin = torch.cos(a) / scale, torch.sin(a) / scale
    theta = torch.zeros(len(a), 2, 3)
    # output pixel (x, y) samples input at R(-a) / s applied to (x, y) minus the shift; y grows downwards
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * h / w
    theta[:, 1, 0], theta[:, 1, 1] = sin * w / h, cos
    shift = torch.stack([dx.float() * 2 / w, dy.float() * 2 / h], dim=1)  # N x 2 in normalized units
    theta[:, :, 2] = -(theta[:, :, :2] @ shift.unsqueeze(2)).squeeze(2)
    return theta


def random_affine(x: torch.Tensor, *, rotation_deg: float, zoom: float, shift_px: int,
                  generator: torch.Generator) -> torch.Tensor:
    """Rotate by U(-rotation_deg, rotation_deg), scale by U(1 - zoom, 1 + zoom), shift by integers in
    [-shift_px, shift_px] on each axis; bilinear sampling, zero fill outside the image.

    Parameters are drawn on the CPU from ``generator`` (device-independent and replayable).

    Shape: ``N x C x H x W`` float in [0, 1] -> the same.
    """
    n = len(x)
    if n == 0 or (rotation_deg == 0 and zoom == 0 and shift_px == 0):
        return x
    u = torch.rand(2, n, generator=generator) * 2 - 1
    d = torch.randint(-shift_px, shift_px + 1, (2, n), generator=generator)
    theta = affine_matrices(u[0] * rotation_deg, 1 + u[1] * zoom, d[0], d[1], tuple(x.shape[2:]))
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


__all__ = ["affine_matrices", "random_affine"]
