"""What the playground computes, as plain functions: images in, arrays and dicts out. No Gradio here, so every
result the page shows can be tested without a browser (see ``app.py`` for the layout that calls these).

Images follow optik's contract: ``uint8`` ``1 x C x H x W`` conformed to the model (its channels and size) for
the current image, float ``[0, 1]`` ``N x C x H x W`` for computed ones; :func:`to_display` makes ``H x W (x 3)``
``uint8`` arrays for the page.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optik.augment.generator import AugmentConfig, augment
from optik.augment.presets import make_augment
from optik.core.errors import ConfigError
from optik.evaluation.evaluate import predict_proba
from optik.models.classifier import Classifier
from optik.models.inputs import conform, fit_images
from optik.runs import Run

DISPLAY_SIZE = 224  # small images are enlarged by an integer factor (nearest) to about this many pixels


@dataclass
class Example:
    """One image of a run's test split: ``image`` ``uint8`` ``1 x C x H x W`` conformed to the model."""

    image: torch.Tensor
    label: int
    index: int  # position in the test split


@dataclass
class RunModel:
    """A run's model and a few of its test images, as the page shows them."""

    name: str
    run: Path
    model: Classifier
    examples: list[Example] = field(default_factory=list)


def load_run(run: str | os.PathLike, *, name: str | None = None, n_examples: int = 8) -> RunModel:
    """Load a classification run folder: its model and up to ``n_examples`` test images, one class after another
    (the first test image of each class, then the second, ...), so the examples show different classes. Only those
    images are decoded, however large the run's data."""
    opened = Run.open(run, kind="classifier")
    model = opened.model().eval()
    test = opened.split("test")
    labels = test.labels
    # rank of each image within its class, then class: one of each class first
    rank = torch.zeros(len(labels), dtype=torch.long)
    for c in labels.unique():
        where = (labels == c).nonzero().flatten()
        rank[where] = torch.arange(len(where))
    chosen = sorted(range(len(labels)), key=lambda i: (int(rank[i]), int(labels[i])))[:n_examples]
    images = conform(test.take(chosen), model)
    examples = [Example(images[i:i + 1], int(labels[j]), int(j)) for i, j in enumerate(chosen)]
    return RunModel(name or opened.path.name, opened.path, model, examples)


def conform_upload(array: np.ndarray, model: Classifier) -> torch.Tensor:
    """A decoded image (``uint8`` ``H x W`` or ``H x W x 3``) as ``uint8`` ``1 x C x H x W`` for ``model``:
    resized and grey/RGB converted exactly as :func:`optik.predict` does."""
    return fit_images([array], model)


# ------------------------------------------------------------------------------------------------ predict
def probabilities(model: Classifier, x: torch.Tensor, *, top_k: int = 5) -> list[dict[str, float]]:
    """Top-k softmax probabilities per image, ``{class name: probability}`` most likely first.

    Args:
        x: ``N x C x H x W``, ``uint8`` or float in [0, 1].
    """
    probs = predict_proba(model, x)
    k = min(top_k, model.num_classes)
    return [{model.classes[i]: float(p[i]) for i in np.argsort(-p, kind="stable")[:k]} for p in probs]


def predicted_class(model: Classifier, x: torch.Tensor) -> int:
    """The most likely class of one image ``x`` (``1 x C x H x W``), as an index."""
    return int(np.argmax(predict_proba(model, x)[0]))


# ------------------------------------------------------------------------------------------------ attack
@dataclass
class AttackView:
    """An attack on one image, as the page shows it.

    Attributes:
        adv: ``1 x C x H x W`` in [0, 1]: the adversarial image, or the clean image where the attack failed.
        perturbation: ``1 x C x H x W`` in [0, 1]: ``0.5 + delta * magnification`` (grey is no change).
        magnification: how much the perturbation is enlarged (``0.5 / max|delta|``); None when ``delta == 0``.
        probabilities: top-k of ``adv``; success: the prediction of ``adv`` is not ``label``.
        label: the class attacked (the true class of a test image, else the model's clean prediction).
        clean_class: the model's prediction for the clean image.
        l2, linf: norms of ``delta = adv - x`` in pixels.
    """

    adv: torch.Tensor
    perturbation: torch.Tensor
    magnification: float | None
    probabilities: dict[str, float]
    success: bool
    label: int
    clean_class: int
    l2: float
    linf: float


def whole_number(value: Any, name: str, *, low: int, high: int) -> int:
    """``value`` (a number from the page, possibly a float such as 10.0) as an int in [low, high], or a
    ConfigError that names the setting."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value != int(value) or not low <= value <= high:
        raise ConfigError(f"{name}: expected a whole number from {low} to {high}, got {value!r}")
    return int(value)


def page_attacks() -> dict[str, str]:
    """The attacks the page offers, label -> registered name: those registered with a ``playground`` label, the
    ones with a fixed eps budget first, then the minimal-perturbation ones."""
    from optik.robustness.attacks import ATTACKS

    offered = [s for s in ATTACKS.specs() if s.playground]
    return {s.playground: s.name for s in sorted(offered, key=lambda s: (s.minimal, s.name))}


def make_page_attack(model: Classifier, *, method: str, eps: float, steps: int = 10, seed: int = 0):
    """The optik attack the page runs, by its registered name: a fixed-budget attack gets ``eps`` (pixels, in its
    norm) and, when iterative, ``steps``; a minimal-perturbation attack (``cw``) ignores both."""
    from optik.robustness.attacks import ATTACKS, make_attack

    offered = page_attacks().values()
    if method not in offered:
        raise ConfigError(f"expected an attack method among {', '.join(offered)}, got {method!r}")
    spec = ATTACKS.spec(method)
    if spec.minimal:
        return make_attack(method, model, eps=None, seed=seed)
    options = {"steps": steps} if spec.iterative else {}
    return make_attack(method, model, eps=float(eps), seed=seed, **options)


def run_attack(model: Classifier, x: torch.Tensor, *, method: str, eps: float, label: int, steps: int = 10,
               seed: int = 0, top_k: int = 5) -> AttackView:
    """Attack one image ``x`` (``uint8`` ``1 x C x H x W``) away from ``label`` with an optik attack."""
    clean = x.float().div(255)
    attack = make_page_attack(model, method=method, eps=eps, steps=steps, seed=seed)
    result = attack(clean, torch.tensor([label]))
    delta = result.adv - clean
    peak = float(delta.abs().max())
    magnification = 0.5 / peak if peak > 0 else None
    norms = result.norms(clean)
    return AttackView(adv=result.adv, perturbation=(0.5 + delta * (magnification or 0.0)).clamp(0, 1),
                      magnification=magnification, probabilities=probabilities(model, result.adv, top_k=top_k)[0],
                      success=bool(result.success[0]), label=label,
                      clean_class=int(result.clean_logits[0].argmax()), l2=float(norms["l2"][0]),
                      linf=float(norms["linf"][0]))


# ------------------------------------------------------------------------------------------------ augment
def augment_config(*, rotation_range: float = 0.0, width_shift_range: float = 0.0, height_shift_range: float = 0.0,
                   shear_range: float = 0.0, zoom_range: float = 0.0, horizontal_flip: bool = False,
                   vertical_flip: bool = False, brightness: float = 0.0, fill_mode: str = "nearest",
                   cval: float = 0.0) -> AugmentConfig | None:
    """The page's knobs as an :class:`AugmentConfig` (None when every knob is at identity).

    Knobs keep optik's names and units (degrees; shifts as fractions of the width / height when < 1; zoom ``z``
    draws from [1 - z, 1 + z]); ``brightness`` ``b`` is ``brightness_range = (1 - b, 1 + b)``.
    """
    if not 0 <= brightness < 1:
        raise ConfigError(f"expected brightness in [0, 1) (a multiplier drawn from [1 - b, 1 + b]), got {brightness}")
    return make_augment("none", rotation_range=rotation_range, width_shift_range=width_shift_range,
                        height_shift_range=height_shift_range, shear_range=shear_range, zoom_range=zoom_range,
                        horizontal_flip=horizontal_flip, vertical_flip=vertical_flip,
                        brightness_range=(1 - brightness, 1 + brightness) if brightness else None,
                        fill_mode=fill_mode, cval=cval)


def augment_samples(x: torch.Tensor, cfg: AugmentConfig | None, *, n: int = 6, seed: int = 0) -> torch.Tensor:
    """``n`` augmented copies of one image ``x`` (``uint8`` ``1 x C x H x W``), float ``n x C x H x W`` in [0, 1]
    (brightness can exceed 1: clipped). Parameters are drawn from ``torch.Generator().manual_seed(seed)``."""
    batch = x.float().div(255).expand(n, -1, -1, -1).contiguous()
    if cfg is None:
        return batch
    out, _ = augment(batch, cfg, generator=torch.Generator().manual_seed(seed))
    return out.clamp(0, 1)


# ------------------------------------------------------------------------------------------------ Grad-CAM
def gradcam_overlay(model: Classifier, x: torch.Tensor, *, target: int | None = None, alpha: float = 0.5
                    ) -> np.ndarray:
    """The Grad-CAM heat map of ``target`` (default: the predicted class) over image ``x`` (``uint8``
    ``1 x C x H x W``), ``H x W x 3`` ``uint8``. Needs :mod:`optik.interpret` (ImportError without it)."""
    from optik.interpret import gradcam, overlay

    heat = gradcam(model, x.float().div(255), target=target)  # 1 x H x W in [0, 1]
    return overlay(hwc(x[0]), heat[0].numpy(), alpha=alpha)


# ------------------------------------------------------------------------------------------------ display
def hwc(image: torch.Tensor) -> np.ndarray:
    """``C x H x W`` (``uint8``, or float in [0, 1]) -> ``uint8`` ``H x W`` (grey) or ``H x W x 3``."""
    if image.is_floating_point():
        image = image.clamp(0, 1).mul(255).round().to(torch.uint8)
    a = image.permute(1, 2, 0).cpu().numpy()
    return a[..., 0] if a.shape[2] == 1 else a


def to_display(image: torch.Tensor | np.ndarray, *, size: int = DISPLAY_SIZE) -> np.ndarray:
    """An image enlarged by the integer factor that brings its longer side closest to ``size`` (nearest
    neighbour, so pixels stay sharp); ``C x H x W`` tensors are converted with :func:`hwc` first."""
    a = hwc(image) if isinstance(image, torch.Tensor) else image
    factor = max(1, round(size / max(a.shape[:2])))
    return a.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else a


__all__ = ["AttackView", "Example", "RunModel", "augment_config", "augment_samples",
           "conform_upload", "gradcam_overlay", "hwc", "load_run", "make_page_attack", "page_attacks",
           "predicted_class", "probabilities", "run_attack", "to_display"]
