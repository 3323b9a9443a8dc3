"""Images adapted to what a Classifier expects: its channels and its input size (``uint8`` in, ``uint8`` out)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from optik.core.errors import DataError
from optik.core.images import resize_uint8
from optik.data.folder import stack_images
from optik.models.classifier import Classifier

_LUMA = (0.299, 0.587, 0.114)


def conform(images: torch.Tensor, model: Classifier) -> torch.Tensor:
    """Resize ``uint8`` ``N x C x H x W`` images and adapt their channels (grey <-> RGB) to what ``model`` expects;
    on the images' device."""
    c = model.in_channels
    if images.shape[1] != c:
        if images.shape[1] == 1 and c == 3:
            images = images.expand(-1, 3, -1, -1)
        elif images.shape[1] == 3 and c == 1:
            w = torch.tensor(_LUMA, device=images.device).view(1, 3, 1, 1)
            images = (images.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
        else:
            raise DataError(f"expected images with {c} channel(s), got {images.shape[1]}")
    if tuple(images.shape[2:]) != model.input_size:
        images = resize_uint8(images, model.input_size)
    return images.contiguous()


def fit_images(arrays: Sequence[np.ndarray], model: Classifier) -> torch.Tensor:
    """Decoded images (``uint8`` ``H x W`` or ``H x W x 3``, any sizes) as ``uint8`` ``N x C x H x W`` for
    ``model``: resized and grey/RGB converted as every command that reads image files does."""
    return conform(stack_images(list(arrays), size=model.input_size, channels=model.in_channels), model)


__all__ = ["conform", "fit_images"]
