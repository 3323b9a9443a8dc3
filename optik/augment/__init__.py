"""Batched augmentation with the ImageDataGenerator vocabulary; parameters drawn from an explicit generator."""
from optik.augment.generator import FILL_MODES, AugmentConfig, apply, augment, sample_params
from optik.augment.presets import KNOBS, PRESETS, AugmentOptions, make_augment

__all__ = ["FILL_MODES", "KNOBS", "PRESETS", "AugmentConfig", "AugmentOptions", "apply", "augment", "make_augment",
           "sample_params"]
