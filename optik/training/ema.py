"""An exponential moving average of a network's weights, its decay set as a half-life in images."""
from __future__ import annotations

import copy

import torch
from torch import nn


def ema_beta(*, batch_size: int, half_life_images: float, images_seen: int, rampup: float | None) -> float:
    """The per-step decay: after ``half_life_images`` images an old weight has half its influence.

    With ``rampup`` (StyleGAN2-ADA's ``ema_rampup``, https://arxiv.org/abs/2006.06676), the half-life is at most
    ``rampup * images_seen``, so the average does not drag the random initial weights along early in training.
    """
    half_life = half_life_images
    if rampup is not None:
        half_life = min(half_life, rampup * images_seen)
    return 0.5 ** (batch_size / max(half_life, 1e-8))


class EMA(nn.Module):
    """Holds ``average``, a copy of ``net`` whose parameters track an exponential moving average of ``net``'s;
    buffers (BatchNorm statistics) are copied as they are."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.average = copy.deepcopy(net).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, net: nn.Module, beta: float) -> None:
        ema_p = list(self.average.parameters())
        torch._foreach_lerp_(ema_p, [p.detach() for p in net.parameters()], 1.0 - beta)
        for b_ema, b in zip(self.average.buffers(), net.buffers()):
            b_ema.copy_(b)
