"""The Classifier: a network plus the preprocessing it was trained with, so pixels in, logits out."""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn


class Classifier(nn.Module):
    """Wraps a network that expects normalized inputs; callers pass pixels.

    Args:
        net: any module mapping normalized ``N x C x H x W`` to logits ``N x K``.
        classes: class names, index = label.
        in_channels: channels the network expects.
        input_size: ``(H, W)`` the network was built for.
        mean, std: per-channel statistics of the training pixels (in [0, 1] units).
        arch: how to rebuild ``net`` (``{"name": ..., "spec": ...}``), saved in ``model.json``.

    Shape:
        input ``N x C x H x W`` float in [0, 1]; output ``N x K`` raw logits (no softmax).
    """

    def __init__(self, net: nn.Module, *, classes: Sequence[str], in_channels: int, input_size: Sequence[int],
                 mean: Sequence[float], std: Sequence[float], arch: dict[str, Any]):
        super().__init__()
        if len(mean) != in_channels or len(std) != in_channels:
            raise ValueError(f"expected {in_channels} mean/std values, got {len(mean)} and {len(std)}")
        self.net = net
        self.classes = list(classes)
        self.in_channels = in_channels
        self.input_size = tuple(int(s) for s in input_size)
        self.arch = dict(arch)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)

    def describe(self) -> dict[str, Any]:
        """Everything needed to rebuild this Classifier, as saved in ``model.json``."""
        return {
            "format": "optik.Classifier/1",
            "arch": self.arch,
            "classes": self.classes,
            "in_channels": self.in_channels,
            "input_size": list(self.input_size),
            "mean": self.mean.flatten().tolist(),
            "std": self.std.flatten().tolist(),
            "num_parameters": sum(p.numel() for p in self.net.parameters()),
        }
