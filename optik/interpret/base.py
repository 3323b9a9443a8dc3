"""What every explanation shares: the model's mode and parameter flags restored, and the class to explain."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from optik.core.errors import ConfigError, DataError
from optik.core.images import check_images
from optik.core.modes import eval_mode

Target = int | Sequence[int] | torch.Tensor | None

__all__ = ["Target", "explain_mode", "check_input", "resolve_targets", "device_of"]


def explain_mode(model: nn.Module):
    """Eval mode and frozen parameters for the duration; every submodule's mode and every parameter's flag come
    back after (the contract attacks keep too)."""
    return eval_mode(model, freeze=True)


def device_of(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without either)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def check_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` checked against the image contract (float ``N x C x H x W`` in [0, 1]), detached, on the model's
    device; a Classifier's channel count is checked too."""
    channels = getattr(model, "in_channels", None)
    check_images(x, channels=channels if isinstance(channels, int) else None)
    if not len(x):
        raise DataError("expected at least one image, got an empty batch (shape "
                        f"{tuple(x.shape)})")
    return x.detach().to(device_of(model))


def resolve_targets(logits: torch.Tensor, target: Target) -> torch.Tensor:
    """The class index to explain for each image: the predicted class (``target=None``), one class for all
    images (an int), or one per image (a sequence or tensor of ``N`` ints).

    Shape:
        ``logits`` ``N x K``; returns ``N`` int64 on the logits' device.
    """
    n, k = logits.shape
    if target is None:
        return logits.detach().argmax(1)
    t = torch.as_tensor(target, dtype=torch.long).to(logits.device).flatten()
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ConfigError(f"expected one target class for all images or one per image ({n}), got {t.numel()}")
    if bool(((t < 0) | (t >= k)).any()):
        raise ConfigError(f"expected target classes in 0..{k - 1}, got {t.tolist()}")
    return t
