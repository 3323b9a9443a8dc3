"""The interpretability functions a notebook user (and ``optik explain``) calls: explain one image, draw a
model's filters, and a gallery of Grad-CAM maps for the report."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from optik.api import conform, fit_images, load, top_k_classes
from optik.core.errors import ConfigError, DataError
from optik.core.images import to_float
from optik.data.folder import decode_image
from optik.evaluation.evaluate import predict_proba
from optik.evaluation.figures import save_figure
from optik.interpret.figures import feature_map_grid, filter_grid, heatmap_grid
from optik.interpret.gradcam import gradcam
from optik.interpret.layers import Layer, conv_layers, feature_maps, first_layer_filters, resolve_layer
from optik.interpret.saliency import saliency
from optik.models.classifier import Classifier

METHODS = ("gradcam", "saliency", "smoothgrad", "feature-maps", "filters")
HEATMAPS = ("gradcam", "saliency", "smoothgrad")
SMOOTHGRAD = {"n": 50, "noise": 0.15, "seed": 0}  # the paper's suggested settings; figures say which were used
ImageInput = str | os.PathLike | np.ndarray


def explain(run_or_model: str | os.PathLike | Classifier, image: ImageInput | None = None, *,
            method: str = "gradcam", out: str | os.PathLike | None = None, target: int | str | None = None,
            layer: Layer = None, top_k: int = 3) -> dict:
    """Explain a model's decision on one image (or draw its filters) and save the figure as a PNG.

    Args:
        run_or_model: a run folder or a Classifier.
        image: an image file (or a decoded ``uint8`` ``H x W`` / ``H x W x 3`` array); not needed for ``filters``.
        method: ``gradcam`` (Grad-CAM at ``layer``), ``saliency`` (input gradient), ``smoothgrad``,
            ``feature-maps`` (the top channels of ``layer``), ``filters`` (the first convolution's weights).
        out: the PNG to write; default ``<image stem>-<method>.png`` in the current folder (``<run>-filters.png``
            for filters without an image).
        target: class to explain (index or name); default the predicted class. Heatmap methods only.
        layer: layer name or module for ``gradcam`` / ``feature-maps``; default the last spatial map before global
            pooling (:func:`optik.interpret.default_target_layer`).
        top_k: classes in the returned prediction.

    Returns:
        ``{"method", "layer", "target", "prediction": [{"class", "probability"}] (top-k, as optik.predict),
        "out"}``; ``prediction`` is None when there is no image, ``layer`` and ``target`` when they do not apply.
    """
    method = _check_options(method, image, target, layer)
    model = run_or_model if isinstance(run_or_model, Classifier) else load(run_or_model)
    images = None if image is None else load_image(model, image)
    probs = None if images is None else predict_proba(model, images)
    x = None if images is None else to_float(images)
    result = {"method": method, "layer": None, "target": None,
              "prediction": None if probs is None else top_k_classes(probs[0], model.classes, top_k)}
    if method == "filters":
        fig = filters_figure(model)  # raises for a model without convolutions
        result["layer"] = conv_layers(model)[0][0]
    elif method == "feature-maps":
        result["layer"], module = resolve_layer(model, layer, x)
        fig = feature_map_grid(feature_maps(model, x, layer=module)[0], layer=result["layer"])
    else:
        t = int(np.argmax(probs[0])) if target is None else class_index(model, target)
        result["target"] = model.classes[t]
        result["layer"], fig = _heatmap_figure(model, x, torch.from_numpy(probs), method, t, layer)
    stem = _stem(run_or_model, image)
    path = Path(out) if out is not None else Path.cwd() / f"{stem}-{method}.png"
    result["out"] = str(save_figure(fig, path))
    return result


def _check_options(method: str, image, target, layer) -> str:
    method = method.lower()
    if method not in METHODS:
        raise ConfigError(f"expected method one of {', '.join(METHODS)}, got {method!r}")
    if image is None and method != "filters":
        raise ConfigError(f"expected an image for method {method!r} (only 'filters' needs none), got none")
    if target is not None and method not in HEATMAPS:
        raise ConfigError(f"target applies to {', '.join(HEATMAPS)}, not to {method!r}; leave it out")
    if layer is not None and method not in ("gradcam", "feature-maps"):
        raise ConfigError(f"layer applies to gradcam and feature-maps, not to {method!r}; leave it out")
    return method


def _heatmap_figure(model: Classifier, x: torch.Tensor, probs: torch.Tensor, method: str, target: int,
                    layer: Layer):
    """``(layer name or None, figure)`` of one heatmap method over images ``x``."""
    name = None
    if method == "gradcam":
        name, module = resolve_layer(model, layer, x)
        heat = gradcam(model, x, target=target, layer=module)
        title = f"Grad-CAM at layer {name}"
    else:
        heat, title = _saliency(model, x, method, target)
    targets = torch.full((len(x),), target)
    return name, heatmap_grid(x, heat, probs, model.classes, targets=targets, title=title)


def _saliency(model: Classifier, x: torch.Tensor, method: str, target: int | None) -> tuple[torch.Tensor, str]:
    """Maps and figure title of ``saliency`` (plain gradient) or ``smoothgrad`` (with :data:`SMOOTHGRAD`)."""
    if method == "saliency":
        return saliency(model, x, target=target), "Saliency |d logit / d pixel|"
    heat = saliency(model, x, target=target, method="smoothgrad", **SMOOTHGRAD)
    return heat, f"SmoothGrad ({SMOOTHGRAD['n']} samples, noise {SMOOTHGRAD['noise']:g} of the pixel range)"


def load_image(model: Classifier, image: ImageInput) -> torch.Tensor:
    """One image file (or decoded array) as ``uint8`` ``1 x C x H x W`` fitted to ``model`` (as optik.predict)."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
            raise DataError(f"expected a uint8 image H x W or H x W x 3, got {image.dtype} {image.shape}")
        array = image
    else:
        path = Path(image)
        if not path.is_file():
            what = "a folder" if path.is_dir() else "which does not exist"
            raise DataError(f"expected an image file, got {str(path)!r}, {what}")
        array = decode_image(path)
    return fit_images([array], model)


def class_index(model: Classifier, target: int | str) -> int:
    """A class given by index or name -> its index; raises listing the classes."""
    if isinstance(target, str) and target in model.classes:
        return model.classes.index(target)
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool) and 0 <= target < model.num_classes:
        return int(target)
    if isinstance(target, str) and target.isdigit() and int(target) < model.num_classes:
        return int(target)
    raise ConfigError(f"expected target as a class name or index 0..{model.num_classes - 1}, got {target!r}; "
                      f"classes: {', '.join(model.classes)}")


def _stem(run_or_model, image: ImageInput | None) -> str:
    if image is not None and not isinstance(image, np.ndarray):
        return Path(image).stem
    if image is None and not isinstance(run_or_model, Classifier):
        return Path(run_or_model).name
    return "image" if image is not None else "model"


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
        heat, title = _saliency(model, x, method, None)
        title += ", predicted class"
    return heatmap_grid(x, heat, probs, model.classes, labels=labels[idx], title=title)


def pick_examples(labels: torch.Tensor, n: int) -> torch.Tensor:
    """Indices of ``n`` images: the first of each class in label order, then the next ones in order."""
    first = [int((labels == c).nonzero()[0]) for c in labels.unique().tolist()]
    chosen = set(first)
    rest = [i for i in range(len(labels)) if i not in chosen]
    return torch.tensor((first + rest)[:max(1, n)], dtype=torch.long)
