"""The model section of a training config: which network, and how it starts (hub or local weights, transfer)."""
from __future__ import annotations

import dataclasses

from optik.core.config import Section, option, require


@dataclasses.dataclass(frozen=True)
class ModelConfig(Section):
    """The classifier to build (:func:`optik.models.create_classifier`) and how :mod:`optik.models.transfer`
    fine-tunes it: frozen backbone, stages trained, discriminative learning rates.

    ``unfreeze_at`` is checked by the composing config too: it needs the number of epochs and of processes.
    """

    model: str = option("cnn", "a model name (`optik models`) or a CNN spec string")
    pretrained: bool = option(False, "zoo / timm models: start from the default hub weights (cached or online)")
    weights: str | None = option(None, "start from these weights: .safetensors / .pth file or optik run folder")
    input_size: int | None = option(None, "the size the network sees (resized on the fly); default: the zoo "
                                          "model's native size, the data's size for optik CNNs", at_most=8192)
    freeze: str = option("none", "none | backbone (train the head only; backbone BatchNorm stays frozen)")
    unfreeze_at: int | None = option(None, "with freeze=backbone: the epoch (0-based) fine-tuning starts")
    trainable_stages: int | None = option(None, "fine-tune only the last N backbone stages (and the head); "
                                                "earlier stages stay frozen, BatchNorm included")
    backbone_lr_scale: float = option(1.0, "backbone learning rate = lr * this (discriminative LRs)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.freeze in ("none", "backbone"), "freeze", "none or backbone", self.freeze)
        require(not (self.pretrained and self.weights), "pretrained",
                "either pretrained (hub weights) or weights (a local file), not both", f"both, weights={self.weights}")
        require(self.trainable_stages is None or self.trainable_stages >= 0, "trainable_stages",
                "None or an integer >= 0", self.trainable_stages)
        require(self.input_size is None or self.input_size >= 8, "input_size", "None or an integer >= 8",
                self.input_size)
        require(self.backbone_lr_scale > 0, "backbone_lr_scale", "a factor > 0", self.backbone_lr_scale)
