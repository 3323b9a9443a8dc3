"""Batched augmentation on whole tensors (CPU or GPU); parameters are sampled from an explicit generator."""
from optik.augment.shift import random_shift, shift

__all__ = ["random_shift", "shift"]
