"""Explicit randomness: every stochastic step derives its generator from (seed, purpose, epoch, rank).

Random draws go through the helpers below (``uniform``, ``normal``, ``randint``, ``randperm``, ``multinomial``): each
draws on the device of the generator it is given and moves the result to the device the caller wants. PyTorch
refuses a CPU generator for a CUDA tensor ("Expected a 'cuda' device type for generator"), so drawing with
``generator=`` straight into a tensor of the data's device breaks on a GPU as soon as the generator lives elsewhere
(augmentation draws its parameters on the CPU, so the training task's generator does). On the CPU the helpers
give exactly the numbers of the plain calls they wrap; a CPU generator gives the same numbers whatever the data's
device, so a run draws the same random starts on a laptop and on a GPU.
"""
from __future__ import annotations

import hashlib
import random
from typing import Sequence

import numpy as np
import torch

Shape = Sequence[int] | torch.Size


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed derived from ``seed`` and ``parts``: independent streams that survive a restart."""
    digest = hashlib.sha256(repr((int(seed),) + parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def generator(seed: int, *parts: object, device: str | torch.device = "cpu") -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, *parts))
    return g


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch's global generators (for code that does not take a generator)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------------ device-safe draws
def _source(generator: torch.Generator | None, device: str | torch.device | None) -> torch.device:
    """Where to draw: on the generator's device if there is one (PyTorch requires it), else on ``device``."""
    if generator is not None:
        return generator.device
    return torch.device(device) if device is not None else torch.device("cpu")


def _moved(x: torch.Tensor, device: str | torch.device | None) -> torch.Tensor:
    return x if device is None or x.device == torch.device(device) else x.to(device, non_blocking=True)


def uniform(shape: Shape, low: float = 0.0, high: float = 1.0, *, generator: torch.Generator | None = None,
            device: str | torch.device | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``U(low, high)`` samples of ``shape`` on ``device`` (``Tensor.uniform_``'s numbers for the generator)."""
    x = torch.empty(tuple(shape), device=_source(generator, device), dtype=dtype).uniform_(low, high,
                                                                                          generator=generator)
    return _moved(x, device)


def normal(shape: Shape, *, generator: torch.Generator | None = None, device: str | torch.device | None = None,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal samples of ``shape`` on ``device`` (``torch.randn``'s numbers for the generator)."""
    return _moved(torch.randn(tuple(shape), generator=generator, device=_source(generator, device), dtype=dtype),
                  device)


def uniform_like(like: torch.Tensor, low: float = 0.0, high: float = 1.0, *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """``U(low, high)`` samples shaped, typed and laid out like ``like`` (``channels_last`` too: the numbers fill
    memory in the same order as ``torch.empty_like(like).uniform_``), on ``like``'s device."""
    x = torch.empty_like(like, device=_source(generator, like.device)).uniform_(low, high, generator=generator)
    return _moved(x, like.device)


def normal_like(like: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal samples shaped, typed and laid out like ``like``, on ``like``'s device."""
    return _moved(torch.empty_like(like, device=_source(generator, like.device)).normal_(generator=generator),
                  like.device)


def randint(high: int, shape: Shape, *, generator: torch.Generator | None = None,
            device: str | torch.device | None = None) -> torch.Tensor:
    """Integers in ``[0, high)`` of ``shape`` on ``device``."""
    return _moved(torch.randint(high, tuple(shape), generator=generator, device=_source(generator, device)), device)


def randperm(n: int, *, generator: torch.Generator | None = None, device: str | torch.device | None = None
             ) -> torch.Tensor:
    """A random permutation of ``0 .. n-1`` on ``device``."""
    return _moved(torch.randperm(n, generator=generator, device=_source(generator, device)), device)


def multinomial(weights: torch.Tensor, n: int, *, replacement: bool = True,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """``n`` indices drawn with probabilities proportional to ``weights``, returned on ``weights``' device."""
    source = _source(generator, weights.device)
    return _moved(torch.multinomial(weights.to(source), n, replacement=replacement, generator=generator),
                  weights.device)
