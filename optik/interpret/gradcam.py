"""Grad-CAM: where in the image the evidence for a class lies, from the gradients at a convolutional layer."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optik.core.errors import ConfigError
from optik.interpret.base import Target, check_input, explain_mode, resolve_targets
from optik.interpret.layers import Layer, capture, resolve_layer


def gradcam(model: nn.Module, x: torch.Tensor, *, target: Target = None, layer: Layer = None,
            upsample: bool = True) -> torch.Tensor:
    """Grad-CAM heatmaps (Selvaraju et al. 2017, https://arxiv.org/abs/1610.02391).

    For each image, the channel weights are the spatial mean of the gradient of the target logit with respect to
    the layer's activations; the map is the ReLU of the weighted sum of the activations, upsampled bilinearly to
    the input size and divided by its maximum. A map that is zero everywhere (no positive evidence at this
    layer) stays zero rather than being stretched.

    The model runs in eval mode with its parameters frozen; its mode and ``requires_grad`` flags come back after,
    its parameters get no ``.grad``, and the hook is removed even when an error is raised.

    Args:
        model: a Classifier (pixels in, logits out) or any module mapping images to logits ``N x K``.
        x: images in [0, 1].
        target: class to explain: ``None`` the predicted class, an int for all images, or one per image.
        layer: layer name (see :func:`optik.interpret.layers.spatial_layers`) or module; default the last spatial
            map before global pooling (:func:`optik.interpret.layers.default_target_layer`).
        upsample: resize to the input's ``H x W`` (default); ``False`` keeps the layer's resolution.

    Shape:
        ``x``: ``N x C x H x W`` float in [0, 1]; returns ``N x H x W`` (``N x h x w`` without upsampling) float32
        in [0, 1] on the CPU.

    Deviation from the paper: none in the map; the paper shows it min-max scaled, here it is divided by its max
    (the ReLU makes the minimum 0 almost always), and pytorch-grad-cam additionally min-max scales before and
    after resizing (with OpenCV).
    """
    x = check_input(model, x)
    name, module = resolve_layer(model, layer, x)
    acts, grads = _activations_and_gradients(model, x, module, name, target)
    cam = F.relu((grads.mean(dim=(2, 3), keepdim=True) * acts).sum(1, keepdim=True))  # N x 1 x h x w
    if upsample:
        cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)
    cam = cam[:, 0]
    peak = cam.flatten(1).amax(1).view(-1, 1, 1)
    return torch.where(peak > 0, cam / peak.clamp_min(torch.finfo(cam.dtype).tiny), cam).float().cpu()


def _activations_and_gradients(model: nn.Module, x: torch.Tensor, module: nn.Module, name: str,
                               target: Target) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's output ``N x C x h x w`` and the gradient of the summed target logits with respect to it."""
    with explain_mode(model), capture(module) as seen, torch.enable_grad():
        logits = model(x.requires_grad_(True))
        _check_seen(seen, name)
        score = logits.gather(1, resolve_targets(logits, target)[:, None]).sum()
        (grad,) = torch.autograd.grad(score, seen[0], allow_unused=True)
    if grad is None:
        raise ConfigError(f"layer {name!r} does not feed the logits (its gradient is None); pick a layer on the "
                          "path from the input to the output")
    return seen[0].detach(), grad.detach()


def _check_seen(seen: list, name: str) -> None:
    if len(seen) != 1:
        raise ConfigError(f"expected layer {name!r} to run once per forward pass, it ran {len(seen)} times; "
                          "pick a layer that is used once (not a shared activation module)")
    out = seen[0]
    if not isinstance(out, torch.Tensor) or out.ndim != 4:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"expected layer {name!r} to output a map N x C x h x w, got {got}; pick a "
                          "convolutional layer before global pooling")
    if not out.requires_grad:
        raise ConfigError(f"layer {name!r} output does not depend on the input (no gradient); pick another layer")
