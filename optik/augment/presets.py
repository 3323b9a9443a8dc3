"""Named augmentation presets, in the ImageDataGenerator vocabulary, and the augmentation section of a training
config (:class:`AugmentOptions`: `optik train --augment NAME --rotation-range 10 ...`)."""
from __future__ import annotations

import dataclasses
from typing import Any

from optik.augment.generator import AugmentConfig
from optik.core.config import Section, option
from optik.core.errors import ConfigError, short

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


def make_augment(preset: str, **knobs: Any) -> AugmentConfig | None:
    """The preset's AugmentConfig with ``knobs`` (those not None) on top; None when nothing is left to do."""
    if preset not in PRESETS:
        raise ConfigError(f"augment: expected a preset, one of {', '.join(PRESETS)}, got {short(preset)}")
    values = {**PRESETS[preset], **{k: v for k, v in knobs.items() if v is not None}}
    cfg = AugmentConfig(**values)
    return None if cfg == AugmentConfig(fill_mode=cfg.fill_mode, cval=cfg.cval, keras_compat=cfg.keras_compat) else cfg


@dataclasses.dataclass(frozen=True)
class AugmentOptions(Section):
    """The augmentation section of a training config: a preset, and ImageDataGenerator knobs on top of it.

    :class:`AugmentConfig` holds the resolved parameters of the op (every knob has a value); this section holds what
    a user asks for: a knob left at None keeps the preset's value, and :meth:`augmentation` resolves the two. The
    knobs are AugmentConfig's fields but ``rescale`` (optik images are already in [0, 1]) and ``p``, with Keras'
    names and meanings; the types here are the ones YAML and flags convert to (lists, not tuples).
    """

    augment: str | None = option(None, "augmentation preset: none | default | natural | keras-classic (default: "
                                       "default; none with adversarial training)")
    rotation_range: float | None = option(None, "augment: degrees, U(-r, r) (ImageDataGenerator meaning)")
    width_shift_range: int | float | list | None = option(None, "augment: a float: fraction of width if < 1, else "
                                                                "pixels, U(-r, r); an integer N: whole pixels up to "
                                                                "N-1 with a random sign; a list: one value, random "
                                                                "sign (Keras)")
    height_shift_range: int | float | list | None = option(None, "augment: as width_shift_range, for the height")
    shear_range: float | None = option(None, "augment: shear angle in degrees")
    zoom_range: float | list | None = option(None, "augment: z -> [1-z, 1+z], or lo,hi")
    brightness_range: list | None = option(None, "augment: lo,hi multiplier")
    channel_shift_range: float | None = option(None, "augment: offset range, in [0, 1] pixel units")
    horizontal_flip: bool | None = option(None, "augment: flip left-right half the time")
    vertical_flip: bool | None = option(None, "augment: flip upside down half the time")
    fill_mode: str | None = option(None, "augment: nearest | reflect | wrap | constant")
    cval: float | None = option(None, "augment: the constant of fill_mode constant")
    keras_compat: bool | None = option(None, "augment: reproduce Keras' geometry quirks exactly")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.augmentation()  # validates the preset and knobs now, not at the first training step

    def augmentation(self) -> AugmentConfig | None:
        """The training augmentation: the preset with any knob given here on top (None: no augmentation).

        ``augment`` None is for the composing config to fill in (TrainConfig: ``default``, or ``none`` with
        adversarial training); until it does, no preset."""
        return make_augment("none" if self.augment is None else self.augment, **{k: getattr(self, k) for k in KNOBS})


# The knobs a training config sets on top of a preset: the section's fields but the preset
KNOBS = tuple(f.name for f in dataclasses.fields(AugmentOptions) if f.name != "augment")
