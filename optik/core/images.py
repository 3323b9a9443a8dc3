"""The image contract: between modules, images are float32 NCHW tensors with values in [0, 1]."""
from __future__ import annotations

from typing import Sequence

import torch

from optik.core.errors import DataError

# The largest image optik decodes, everywhere (training data, predict, the playground's uploads): 50 megapixels
# (a 7071 x 7071 image). Larger files are refused before their pixels are decoded.
MAX_IMAGE_PIXELS = 50_000_000


def check_images(x: torch.Tensor, *, channels: int | Sequence[int] | None = None,
                 size: Sequence[int] | None = None, check_range: bool = True, name: str = "images") -> torch.Tensor:
    """Raise a DataError unless ``x`` is a float ``N x C x H x W`` tensor in [0, 1]; the message names what was
    expected, what was received and the likely fix (a missing batch dimension, channels last, 0-255 pixels).

    Args:
        channels: the accepted channel count, or several (a Classifier takes its data's and its network's).
        size: the required ``(H, W)``, if any.
        check_range: also check the values (a device synchronisation: off on hot paths such as a forward pass).
    """
    accepted = tuple(dict.fromkeys((channels,) if isinstance(channels, int) else channels or ()))
    c = " or ".join(map(str, accepted)) or "C"
    hw = "H x W" if size is None else f"{size[0]} x {size[1]}"
    expected = f"{name} as a float batch N x {c} x {hw} of pixels in [0, 1]"
    if not isinstance(x, torch.Tensor):
        raise DataError(f"expected {expected}, got a {type(x).__name__}")
    shape = tuple(x.shape)
    if x.ndim != 4:
        hint = "; add the batch dimension with x.unsqueeze(0)" if x.ndim == 3 else ""
        raise DataError(f"expected {expected}, got shape {shape}{hint}")
    if accepted and shape[1] not in accepted:
        hint = "; channels last? use x.permute(0, 3, 1, 2)" if shape[-1] in accepted else ""
        raise DataError(f"expected {expected}, got shape {shape}: {shape[1]} channels{hint}")
    if size is not None and shape[2:] != tuple(size):
        raise DataError(f"expected {expected}, got shape {shape}")
    if not x.is_floating_point():
        raise DataError(f"expected {expected}, got dtype {str(x.dtype).removeprefix('torch.')}: divide 0-255 "
                        f"pixels by 255 (x.float() / 255)")
    if check_range and x.numel() and (x.min() < 0 or x.max() > 1):
        raise DataError(
            f"expected {name} with pixels in [0, 1], got values in [{x.min().item():.3g}, {x.max().item():.3g}]; "
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
