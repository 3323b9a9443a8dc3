"""Named augmentation presets, in the ImageDataGenerator vocabulary; `optik train --augment NAME`."""
from __future__ import annotations

import dataclasses
from typing import Any

from optik.augment.generator import AugmentConfig
from optik.core.errors import ConfigError

PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    # small geometric jitter that keeps digits and other centred shapes legible (the optik default)
    "default": dict(rotation_range=10, width_shift_range=2.0, height_shift_range=2.0, zoom_range=0.1,
                    fill_mode="constant", cval=0.0),
    # natural photos: mirror images are still the same class
    "natural": dict(width_shift_range=0.1, height_shift_range=0.1, zoom_range=0.1, horizontal_flip=True,
                    fill_mode="reflect"),
    # the classic Keras tutorial pipeline (without its rescale: optik images are already in [0, 1])
    "keras-classic": dict(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, shear_range=0.2,
                          zoom_range=0.2, horizontal_flip=True, fill_mode="nearest"),
}
KNOBS = tuple(f.name for f in dataclasses.fields(AugmentConfig) if f.name not in ("rescale", "p"))


def make_augment(preset: str, **knobs: Any) -> AugmentConfig | None:
    """The preset's AugmentConfig with ``knobs`` (those not None) on top; None when nothing is left to do."""
    if preset not in PRESETS:
        raise ConfigError(f"augment: expected a preset, one of {', '.join(PRESETS)}, got {preset!r}")
    values = {**PRESETS[preset], **{k: v for k, v in knobs.items() if v is not None}}
    cfg = AugmentConfig(**values)
    return None if cfg == AugmentConfig(fill_mode=cfg.fill_mode, cval=cfg.cval, keras_compat=cfg.keras_compat) else cfg
