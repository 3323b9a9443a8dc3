"""Figures of what a model looks at, for a whole model or a handful of images: its first-layer filters, and a
gallery of heatmaps (Grad-CAM, saliency, SmoothGrad) on examples of each class. :func:`optik.explain` and the
report draw with these."""
from __future__ import annotations

from typing import Sequence

import torch

from optik.core.errors import ConfigError, DataError
from optik.core.images import to_float
from optik.evaluation.evaluate import predict_proba
from optik.interpret.figures import filter_grid, heatmap_grid
from optik.interpret.gradcam import gradcam
from optik.interpret.layers import Layer, conv_layers, first_layer_filters, resolve_layer
from optik.interpret.saliency import saliency
from optik.models.classifier import Classifier
from optik.models.inputs import conform

HEATMAPS = ("gradcam", "saliency", "smoothgrad")
SMOOTHGRAD = {"n": 50, "noise": 0.15, "seed": 0}  # the paper's suggested settings; figures say which were used


def saliency_maps(model: Classifier, x: torch.Tensor, method: str, target: int | None) -> tuple[torch.Tensor, str]:
    """Maps and figure title of ``saliency`` (plain gradient) or ``smoothgrad`` (with :data:`SMOOTHGRAD`)."""
    if method == "saliency":
        return saliency(model, x, target=target), "Saliency |d logit / d pixel|"
    heat = saliency(model, x, target=target, method="smoothgrad", **SMOOTHGRAD)
    return heat, f"SmoothGrad ({SMOOTHGRAD['n']} samples, noise {SMOOTHGRAD['noise']:g} of the pixel range)"


def filters_figure(model: Classifier):
    """The first convolution's filters as a grid (see :func:`optik.interpret.filter_grid`)."""
    weights = first_layer_filters(model)
    return filter_grid(weights, title=f"First-layer filters (layer {conv_layers(model)[0][0]})")


def explain_examples(model: Classifier, images: torch.Tensor, labels: torch.Tensor | Sequence[int], *, n: int = 8,
                     method: str = "gradcam", layer: Layer = None):
    """A figure of ``n`` images (one per class first) with their heatmaps for the predicted class, for reports.

    Args:
        model: the Classifier.
        images: ``uint8`` ``N x C x H x W`` (a dataset's images; resized and adapted to the model here).
        labels: the ``N`` true labels (shown in the titles).
        n: images shown.
        method: ``gradcam``, ``saliency`` or ``smoothgrad``.
        layer: Grad-CAM layer (default the last spatial map before global pooling).
    """
    if method not in HEATMAPS:
        raise ConfigError(f"expected method one of {', '.join(HEATMAPS)}, got {method!r}")
    labels = torch.as_tensor(labels).cpu()
    if images.dtype != torch.uint8 or images.ndim != 4 or len(images) != len(labels) or not len(images):
        raise DataError(f"expected uint8 images N x C x H x W and N labels, got {images.dtype} "
                        f"{tuple(images.shape)} and {len(labels)} labels")
    idx = pick_examples(labels, n)
    x = conform(images[idx].cpu(), model)
    probs = torch.from_numpy(predict_proba(model, x))
    x = to_float(x)
    if method == "gradcam":
        name, module = resolve_layer(model, layer, x)
        heat, title = gradcam(model, x, layer=module), f"Grad-CAM at layer {name}, predicted class"
    else:
        heat, title = saliency_maps(model, x, method, None)
        title += ", predicted class"
    return heatmap_grid(x, heat, probs, model.classes, labels=labels[idx], title=title)


def pick_examples(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of ``n`` images: the first of each class in label order, then the next ones in order."""
    first = [int((labels == c).nonzero()[0]) for c in labels.unique().tolist()]
    chosen = set(first)
    rest = [i for i in range(len(labels)) if i not in chosen]
    return torch.tensor((first + rest)[:max(1, n)], dtype=torch.long)


__all__ = ["HEATMAPS", "SMOOTHGRAD", "explain_examples", "filters_figure", "pick_examples", "saliency_maps"]
