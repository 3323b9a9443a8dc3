"""Paths through latent space: linear and spherical interpolation."""
from __future__ import annotations

import torch


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight line ``(1 - t) a + t b``. Shape: ``a, b`` ``N x D``, ``t`` ``T`` -> ``N x T x D``."""
    t = t.to(a).view(1, -1, 1)
    return a.unsqueeze(1) * (1 - t) + b.unsqueeze(1) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016, https://arxiv.org/abs/1609.04468): follows the great
    circle between the directions of ``a`` and ``b`` while the norm changes linearly, so midpoints keep the
    norm typical of Gaussian codes (a straight line passes through low-norm codes the model rarely saw).
    Falls back to :func:`lerp` for (anti-)parallel codes. Shape: ``a, b`` ``N x D``, ``t`` ``T`` -> ``N x T x D``.
    """
    t = t.to(a).view(1, -1, 1)
    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    ua, ub = a / na.clamp_min(1e-12), b / nb.clamp_min(1e-12)
    omega = (ua * ub).sum(1, keepdim=True).clamp(-1, 1).acos().unsqueeze(1)  # N x 1 x 1
    so = omega.sin()
    safe = so.abs() > 1e-6
    wa = torch.where(safe, ((1 - t) * omega).sin() / so.where(safe, torch.ones_like(so)), 1 - t)
    wb = torch.where(safe, (t * omega).sin() / so.where(safe, torch.ones_like(so)), t)
    direction = ua.unsqueeze(1) * wa + ub.unsqueeze(1) * wb
    norm = na.unsqueeze(1) * (1 - t) + nb.unsqueeze(1) * t
    return direction / direction.norm(dim=2, keepdim=True).clamp_min(1e-12) * norm
