"""Penultimate-layer features of a trained optik Classifier, and features of a set of images in batches.

:class:`ClassifierFeatures` maps pixels to the features a classifier computes just before its last layer: what
sample-quality metrics (FID, KID, precision / recall in :mod:`optik.generative.metrics`) compare, and what a linear
probe (:mod:`optik.evaluation.probe`) reads an attribute from. :func:`extract_features` runs any such extractor
over a tensor of images or a data split, one batch at a time.
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator

import torch
from torch import nn

from optik.core.errors import ConfigError, DataError, expect
from optik.core.images import check_images, to_float
from optik.core.modes import eval_mode
from optik.models.classifier import Classifier

__all__ = ["ClassifierFeatures", "extract_features", "frozen"]


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Eval mode and no gradient for the duration; every submodule gets its own mode back (frozen BN stays)."""
    with eval_mode(module), torch.no_grad():
        yield


def _device_of(module: nn.Module) -> torch.device:
    tensor = next(iter(module.parameters()), None)
    tensor = tensor if tensor is not None else next(iter(module.buffers()), None)
    return tensor.device if tensor is not None else torch.device("cpu")


class ClassifierFeatures(nn.Module):
    """The penultimate-layer features of an optik Classifier, taken before their activation.

    For an optik CNN (or any net without a timm ``forward_head``) the features are the output of the
    second-to-last ``nn.Linear`` (the ``fc(128)`` of the default CNN, before its ReLU) when the net has two, else
    the input of its only ``nn.Linear`` (the global-average-pooled map of ``... gap fc``). Linear layers are taken
    in registration order, which is the execution order of an ``nn.Sequential``. For a timm net the features are
    ``forward_head(forward_features(x), pre_logits=True)``. Pre-activation features keep their sign, so two sets
    that differ only in negative values are still told apart.

    The classifier runs in eval mode without gradients; the caller's modes come back afterwards.

    Args:
        classifier: a trained :class:`~optik.models.Classifier`; it stays a submodule (and in ``state_dict``).
        scale: multiplies the features (default 1). FID scales with ``scale**2`` and KID's kernel depends on the
            scale, so fix it once on the real images with :meth:`fit_scale` and reuse it for every comparison.

    Shape:
        input ``N x C x H x W`` float in [0, 1] (the classifier's channels or grayscale, any size it accepts);
        output ``N x num_features`` float, unbounded.
    """

    def __init__(self, classifier: Classifier, *, scale: float | None = None):
        super().__init__()
        net = classifier.net.to(memory_format=torch.channels_last)  # as it trained; ~30 % faster on the CPU
        self.classifier = classifier
        self._timm = hasattr(net, "forward_features") and hasattr(net, "forward_head")
        self._layer, self._take = "", ""
        if self._timm:
            self.num_features = int(getattr(net, "head_hidden_size", None) or net.num_features)
        else:
            linears = [(name, m) for name, m in net.named_modules() if isinstance(m, nn.Linear)]
            expect(bool(linears), "a classifier whose net has an nn.Linear layer (or a timm net)",
                   type(net).__name__, "pass another extractor, e.g. InceptionFeatures", error=ConfigError)
            if len(linears) >= 2:
                self._layer, self._take = linears[-2][0], "output"
                self.num_features = linears[-2][1].out_features
            else:
                self._layer, self._take = linears[-1][0], "input"
                self.num_features = linears[-1][1].in_features
        self.register_buffer("scale", torch.tensor(1.0 if scale is None else float(scale), dtype=torch.float64))

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """Unscaled features ``N x num_features`` (eval mode, no gradient)."""
        net = self.classifier.net
        with frozen(self.classifier):
            h = self.classifier.prepare(x)
            if self._timm:
                return net.forward_head(net.forward_features(h), pre_logits=True)
            taken: list[torch.Tensor] = []
            layer = net.get_submodule(self._layer)
            if self._take == "output":  # clone: a following in-place activation would overwrite it
                hook = layer.register_forward_hook(lambda m, i, o: taken.append(o.clone()))
            else:
                hook = layer.register_forward_pre_hook(lambda m, i: taken.append(i[0].clone()))
            try:
                net(h.contiguous(memory_format=torch.channels_last))
            finally:
                hook.remove()
            return taken[0].flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.raw_features(x)
        return f * self.scale.to(f.dtype)

    def fit_scale(self, images: torch.Tensor, *, batch_size: int = 500,
                  device: str | torch.device | None = None) -> "ClassifierFeatures":
        """Set ``scale = 1 / RMS`` of the raw features of ``images`` (the real, reference set), so that their
        features have unit root-mean-square over all entries. Returns ``self``.

        Shape:
            images ``N x C x H x W``, ``uint8`` in 0..255 or float in [0, 1].
        """
        self.scale.fill_(1.0)
        f = extract_features(self, images, batch_size=batch_size, device=device)
        rms = f.square().mean().sqrt().item()
        expect(rms > 0 and math.isfinite(rms), "reference features with a positive, finite RMS", rms,
               "check the images and the classifier", error=DataError)
        self.scale.fill_(1.0 / rms)
        return self


def extract_features(extractor: nn.Module, images: torch.Tensor, *, batch_size: int = 500,
                     device: str | torch.device | None = None) -> torch.Tensor:
    """Features of ``images``, ``batch_size`` images at a time, in eval mode and without gradients.

    Args:
        extractor: a module mapping pixels in [0, 1] to ``N x D`` features; its modes come back afterwards.
        images: the images, on any device, or a data split (:mod:`optik.data.handles`: in memory or streamed
            from files); only one batch at a time is moved to ``device``.
        batch_size: images per forward pass (bounds the memory; the features do not depend on it).
        device: where the extractor runs (it is moved there); default: where its parameters are.

    Shape:
        images ``N x C x H x W``, ``uint8`` in 0..255 or float in [0, 1]; returns ``N x D`` ``float64`` on the CPU.
    """
    from optik.data.handles import Split, image_batches

    expect(isinstance(images, Split) or isinstance(images, torch.Tensor) and images.ndim == 4,
           "images as an N x C x H x W tensor or a data split",
           tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__, error=DataError)
    expect(isinstance(batch_size, int) and batch_size >= 1, "batch_size >= 1", batch_size)
    if device is not None:
        extractor.to(device)
    device = _device_of(extractor)
    out = []
    with frozen(extractor):
        for batch in image_batches(images, batch_size):
            x = check_images(to_float(batch.to(device)))
            f = extractor(x)
            expect(f.ndim == 2 and len(f) == len(x), f"the extractor to return {len(x)} x D features",
                   tuple(f.shape), "flatten its output", error=ConfigError)
            out.append(f.detach().to("cpu", torch.float64))
    return torch.cat(out) if out else torch.zeros(0, 0, dtype=torch.float64)
