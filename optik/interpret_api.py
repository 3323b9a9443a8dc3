"""The interpretability functions a notebook user (and ``optik explain``) calls: explain one image, draw a
model's filters, and a gallery of Grad-CAM maps (the last two from :mod:`optik.interpret.examples`, which the
report draws with too)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from optik.api import fit_images, load, top_k_classes
from optik.core.errors import ConfigError, DataError
from optik.core.images import to_float
from optik.data.folder import decode_image
from optik.evaluation.evaluate import predict_proba
from optik.evaluation.figures import save_figure
from optik.interpret.examples import HEATMAPS, explain_examples, filters_figure, pick_examples, saliency_maps
from optik.interpret.figures import feature_map_grid, heatmap_grid
from optik.interpret.gradcam import gradcam
from optik.interpret.layers import Layer, conv_layers, feature_maps, resolve_layer
from optik.models.classifier import Classifier

METHODS = ("gradcam", "saliency", "smoothgrad", "feature-maps", "filters")
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
        heat, title = saliency_maps(model, x, method, target)
    targets = torch.full((len(x),), target)
    return name, heatmap_grid(x, heat, probs, model.classes, targets=targets, title=title)


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


__all__ = ["METHODS", "class_index", "explain", "explain_examples", "filters_figure", "load_image",
           "pick_examples"]
