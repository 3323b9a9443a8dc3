"""Batched augmentation on whole tensors (CPU or GPU); parameters are sampled from an explicit generator."""
from optik.augment.affine import affine_matrices, random_affine
from optik.augment.shift import random_shift, shift

__all__ = ["affine_matrices", "random_affine", "random_shift", "shift"]
