"""An in-memory image dataset: ``uint8`` images ``N x C x H x W``, integer labels, class names."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from optik.core.errors import DataError


@dataclass
class ImageDataset:
    """Images stored as ``uint8`` (the loader converts to float in [0, 1]).

    Attributes:
        images: ``uint8`` tensor ``N x C x H x W``.
        labels: ``int64`` tensor ``N`` with values in ``[0, len(classes))``.
        classes: class names, index = label.
        name: the dataset name or path it came from.
        splits: predefined index splits (e.g. an official test set), by split name.
        sources: where each image came from (file paths for folder datasets), for error messages.
        meta: facts about where the data came from, recorded in a run's config.yaml (a manifest's SHA-256 and
            how many of its images lie outside its folder).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    splits: dict[str, torch.Tensor] = field(default_factory=dict)
    sources: list[str] | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4:
            raise DataError(f"expected uint8 images N x C x H x W, got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (len(self.images),):
            raise DataError(f"expected {len(self.images)} labels, got shape {tuple(self.labels.shape)}")
        self.labels = self.labels.long()
        if len(self.labels) and (self.labels.min() < 0 or self.labels.max() >= len(self.classes)):
            raise DataError(f"labels must lie in [0, {len(self.classes)}), got [{self.labels.min()}, {self.labels.max()}]")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def channels(self) -> int:
        return self.images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.images.shape[2:])

    def describe(self) -> str:
        c, h, w = self.images.shape[1:]
        return f"{self.name}: {len(self)} images, {len(self.classes)} classes, {c}x{h}x{w}"
