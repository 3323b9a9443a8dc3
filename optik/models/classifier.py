"""The Classifier: a network plus the preprocessing it was trained with, so pixels in, logits out."""
from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from optik.core.images import check_images


class Classifier(nn.Module):
    """Wraps a network that expects normalized inputs of its own size and channels; callers pass pixels.

    The forward pass adapts the data to the network: a grayscale image is repeated to the network's 3 channels,
    the image is resized (bilinear, antialiased when shrinking) to the network's input size, then normalized with
    the network's mean and std (the pretrained model's for zoo models, the training pixels' for optik CNNs).

    Args:
        net: any module mapping normalized ``N x net_channels x net_input_size`` to logits ``N x K``.
        classes: class names, index = label.
        in_channels: channels of the images callers pass (the data's).
        input_size: ``(H, W)`` of the images callers pass (the data's).
        mean, std: per-channel normalization (in [0, 1] units), one value per network channel.
        arch: how to rebuild ``net`` (``{"name": ..., "spec": ...}``), saved in ``model.json``.
        net_channels: channels the network expects (default ``in_channels``); 1-channel data is repeated.
        net_input_size: ``(H, W)`` the network sees (default ``input_size``).

    Shape:
        input ``N x in_channels x H x W`` float in [0, 1]; output ``N x K`` raw logits (no softmax).
    """

    def __init__(self, net: nn.Module, *, classes: Sequence[str], in_channels: int, input_size: Sequence[int],
                 mean: Sequence[float], std: Sequence[float], arch: dict[str, Any], net_channels: int | None = None,
                 net_input_size: Sequence[int] | None = None):
        super().__init__()
        net_channels = net_channels or in_channels
        if net_channels != in_channels and in_channels != 1:
            raise ValueError(f"expected data with 1 or {net_channels} channels for this network, got {in_channels}")
        if len(mean) != net_channels or len(std) != net_channels:
            raise ValueError(f"expected {net_channels} mean/std values, got {len(mean)} and {len(std)}")
        self.net = net
        self.classes = list(classes)
        self.in_channels = in_channels
        self.input_size = tuple(int(s) for s in input_size)
        self.net_channels = net_channels
        self.net_input_size = tuple(int(s) for s in (net_input_size or input_size))
        self.arch = dict(arch)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] -> the normalized network input (channels, size and statistics of the network)."""
        check_images(x, channels=(self.in_channels, self.net_channels), check_range=False)  # no sync per call
        if x.dtype != self.mean.dtype:  # float64 / half pixels into a float32 network (never integers: see check)
            x = x.to(self.mean.dtype)
        if x.shape[1] != self.net_channels:
            x = x.expand(-1, self.net_channels, -1, -1)
        if tuple(x.shape[-2:]) != self.net_input_size:
            shrink = x.shape[-2] > self.net_input_size[0] or x.shape[-1] > self.net_input_size[1]
            x = F.interpolate(x, size=self.net_input_size, mode="bilinear", align_corners=False, antialias=shrink)
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.prepare(x))

    def describe(self) -> dict[str, Any]:
        """Everything needed to rebuild this Classifier, as saved in ``model.json``."""
        return {
            "format": "optik.Classifier/1",
            "arch": self.arch,
            "classes": self.classes,
            "in_channels": self.in_channels,
            "input_size": list(self.input_size),
            "net_channels": self.net_channels,
            "net_input_size": list(self.net_input_size),
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
            "num_parameters": sum(p.numel() for p in self.net.parameters()),
        }
