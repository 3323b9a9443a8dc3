"""The image contract: between modules, images are float32 NCHW tensors with values in [0, 1]."""
from __future__ import annotations

import torch

from optik.core.errors import DataError


def check_images(x: torch.Tensor, *, channels: int | None = None, name: str = "images") -> torch.Tensor:
    """Raise a DataError unless ``x`` is a float ``N x C x H x W`` tensor in [0, 1] (with ``channels`` if given)."""
    if not isinstance(x, torch.Tensor):
        raise DataError(f"expected {name} as a torch.Tensor, got {type(x).__name__}")
    if x.ndim != 4:
        raise DataError(f"expected {name} of shape N x C x H x W, got shape {tuple(x.shape)}")
    if channels is not None and x.shape[1] != channels:
        raise DataError(f"expected {name} with {channels} channel(s), got {x.shape[1]} (shape {tuple(x.shape)})")
    if not x.is_floating_point():
        raise DataError(f"expected floating-point {name} in [0, 1], got dtype {x.dtype}; divide uint8 by 255")
    if x.numel() and (x.min() < 0 or x.max() > 1):
        raise DataError(
            f"expected {name} in [0, 1], got values in [{x.min().item():.3g}, {x.max().item():.3g}]; "
            f"optik models normalize internally, so pass pixels, not normalized values"
        )
    return x


def resize_uint8(images: torch.Tensor, size) -> torch.Tensor:
    """Resize ``uint8`` ``N x C x H x W`` images to ``size = (H, W)``: antialiased bilinear, rounded back."""
    x = torch.nn.functional.interpolate(images.float(), size=tuple(size), mode="bilinear", antialias=True,
                                        align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1]."""
    return x.float().div_(255) if x.dtype == torch.uint8 else x.float()
