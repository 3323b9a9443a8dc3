"""Saliency maps: how strongly each pixel moves the target logit (plain gradient and SmoothGrad)."""
from __future__ import annotations

import torch
from torch import nn

from optik.core import seed as random
from optik.core.errors import ConfigError
from optik.interpret.base import Target, check_input, explain_mode, resolve_targets

METHODS = ("gradient", "smoothgrad")


def input_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``d logit_target / d x`` for each image (its own target), model mode and parameters untouched.

    Shape:
        ``x``: ``N x C x H x W``; ``target``: ``N`` ints; returns ``N x C x H x W`` like ``x``.
    """
    with explain_mode(model), torch.enable_grad():
        x = x.detach().requires_grad_(True)
        logits = model(x)
        (grad,) = torch.autograd.grad(logits.gather(1, target[:, None]).sum(), x)
    return grad.detach()


def saliency(model: nn.Module, x: torch.Tensor, *, target: Target = None, method: str = "gradient", n: int = 50,
             noise: float = 0.15, seed: int = 0) -> torch.Tensor:
    """Gradient saliency maps (Simonyan et al. 2014, https://arxiv.org/abs/1312.6034) or SmoothGrad (Smilkov et
    al. 2017, https://arxiv.org/abs/1706.03825).

    ``gradient``: ``max_c |d z_t / d x_c|``, the largest absolute gradient over colour channels of the target
    logit ``z_t`` (the class score before softmax, as in the paper). ``smoothgrad``: the same of the gradient
    averaged over ``n`` copies of the image with Gaussian noise of std ``noise * (max(x) - min(x))`` per image (as
    in the authors' code), drawn from a generator seeded with ``seed``; the target class is that of the clean
    image. Maps are raw (not normalized): divide by each map's max to display them.

    Args:
        model: a Classifier or any module mapping images in [0, 1] to logits.
        x: images in [0, 1].
        target: class to explain: ``None`` the predicted class, an int for all images, or one per image.
        method: ``gradient`` or ``smoothgrad``.
        n: noise samples (SmoothGrad; the paper finds 50 enough).
        noise: noise std as a fraction of each image's pixel range (SmoothGrad; the paper suggests 0.1 - 0.2).
            Noisy images are not clipped to [0, 1] (the model sees them as they are, as in the paper).
        seed: seeds the noise (drawn on the CPU, then moved), so a call is repeatable on any device.

    Shape:
        ``x``: ``N x C x H x W`` float in [0, 1]; returns ``N x H x W`` float32 >= 0 on the CPU.
    """
    if method not in METHODS:
        raise ConfigError(f"expected method one of {', '.join(METHODS)}, got {method!r}")
    if method == "smoothgrad" and (n < 1 or noise < 0):
        raise ConfigError(f"expected n >= 1 and noise >= 0 for SmoothGrad, got n={n}, noise={noise}")
    x = check_input(model, x)
    with explain_mode(model), torch.no_grad():
        t = resolve_targets(model(x), target)
    if method == "gradient":
        grad = input_gradient(model, x, t)
    else:
        grad = _smooth_gradient(model, x, t, n=n, noise=noise, seed=seed)
    return grad.abs().amax(dim=1).float().cpu()


def _smooth_gradient(model: nn.Module, x: torch.Tensor, target: torch.Tensor, *, n: int, noise: float,
                     seed: int) -> torch.Tensor:
    """The input gradient averaged over ``n`` noisy copies of ``x`` (``N x C x H x W``)."""
    gen = torch.Generator().manual_seed(seed)
    spread = noise * (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(-1, 1, 1, 1)  # std per image, pixels
    total = torch.zeros_like(x)
    for _ in range(n):
        eps = random.normal(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        total += input_gradient(model, x + spread * eps, target)
    return total / n
