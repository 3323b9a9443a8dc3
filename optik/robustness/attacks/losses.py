"""Losses and margins the attacks share: the logit margin, Croce & Hein's DLR loss, and its numerator for models
with too few classes. Per image, to be maximized by the attack; logits ``N x K``."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from optik.core.errors import ConfigError


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{i != y} z_i`` per image; right when every other logit is negative (masked with -inf,
    not multiplied by 0)."""
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(dim=1)
    return logits.gather(1, y[:, None]).squeeze(1) - other


def dlr_classes(targeted: bool) -> int:
    """The fewest classes the DLR loss is defined for: its denominator reads the third (untargeted) or the fourth
    (targeted) largest logit."""
    return 4 if targeted else 3


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein 2020), per image, to be maximized: shift- and scale-invariant.

    Untargeted: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``; targeted: ``-(z_y - z_t) / (z_pi1 - (z_pi3 +
    z_pi4) / 2)``, with ``z_pi`` the sorted logits. Needs at least 3 (untargeted) or 4 (targeted) classes: with
    fewer, use :func:`margin_loss`, as the attacks here do.
    """
    needed = dlr_classes(target is not None)
    if logits.shape[1] < needed:
        raise ConfigError(f"the {'targeted ' if target is not None else ''}DLR loss needs at least {needed} classes, "
                          f"got {logits.shape[1]}; use the margin loss")
    z = logits.sort(dim=1, descending=True).values
    if target is None:
        return -margin(logits, y) / (z[:, 0] - z[:, 2] + 1e-12)
    zy, zt = logits.gather(1, y[:, None]).squeeze(1), logits.gather(1, target[:, None]).squeeze(1)
    return -(zy - zt) / (z[:, 0] - 0.5 * (z[:, 2] + z[:, 3]) + 1e-12)


def margin_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """The DLR loss without its scale: ``-(z_y - max_{i != y} z_i)`` untargeted, ``z_t - max_{i != t} z_i``
    targeted (Carlini & Wagner's margin), per image, to be maximized. Defined for any number of classes >= 2."""
    return -margin(logits, y) if target is None else margin(logits, target)
