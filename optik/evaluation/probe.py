"""Can the model see an attribute? A linear probe on its frozen penultimate features.

Deep models read patient attributes from medical images that experts cannot see (Gichoya et al., "AI recognition
of patient race in medical imaging", Lancet Digital Health 2022, https://doi.org/10.1016/S2589-7500(22)00063-2).
A model whose features predict an attribute (sex, age band, scanner, hospital) far better than chance can use it
as a shortcut. The probe measures that:

1. the frozen model's penultimate features (:class:`~optik.models.features.ClassifierFeatures`) of the training
   and test images, at most ``max_images`` of each (a seeded draw, so the cost is bounded for large splits);
2. a standardized, L2-regularized logistic regression fitted on the training features to predict the attribute
   (multinomial for more than two values);
3. its AUC on the held-out test images (one-vs-rest macro average for more than two values), with a percentile
   bootstrap interval over test images (Efron & Tibshirani 1993, ch. 13);
4. the same probe on raw pixels, area-downsampled to at most 32 x 32, as a baseline: how much of the attribute
   is simply visible in the image.

The interval covers the sampling of the test images, not the probe's fit, which a fixed ``C`` (no tuning on the
test images) and thousands of training images keep stable.
"""
from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from optik.core.errors import DataError, expect
from optik.core.images import to_float
from optik.data.handles import Split
from optik.evaluation.bootstrap import _interval
from optik.models.classifier import Classifier
from optik.models.features import ClassifierFeatures
from optik.models.inputs import conform

__all__ = ["CHANCE", "MIN_PER_VALUE", "SHORTCUT_AUC", "is_shortcut", "probe_attribute", "probe_auc",
           "split_features", "split_pixels", "verdict"]

CHANCE = 0.5  # the AUC of a probe that cannot tell the values apart
SHORTCUT_AUC = 0.7  # from here an attribute is predicted well enough to act on (a "fair" test by the usual scale)
MIN_PER_VALUE = 10  # images of each value, in each split, below which an AUC and its interval mean little
# Inverse L2 strength on standardized features: sklearn's default, fixed (no tuning on the test images). Overfitting
# cannot inflate a held-out AUC, but a stronger penalty loses signal: C = 0.1 took a faint planted offset from AUC
# 0.997 to 0.93 in tests/test_probe.py, leaning on the label (which agreed with it in training) instead.
PROBE_C = 1.0
MAX_ITER = 2000  # lbfgs iterations; standardized features converge in a few hundred
_CHUNK = 2_000_000  # resample weights held at once (float64: 16 MB; the AUC needs a few arrays of this size)


# ------------------------------------------------------------------------------------------------ inputs
def _draw(split: Split, max_images: int | None, seed: int) -> tuple[Split, np.ndarray]:
    """At most ``max_images`` of ``split``, drawn with ``seed`` and kept in order, and their positions in it (the
    same draw as :func:`optik.data.handles.at_most`)."""
    expect(max_images is None or max_images >= 1, "max_images >= 1 (or None for every image)", max_images)
    n = len(split)
    if max_images is None or n <= max_images:
        return split, np.arange(n)
    positions = np.sort(np.random.default_rng(seed).choice(n, max_images, replace=False))
    return split.subset(torch.from_numpy(positions)), positions


def _read(drawn: Split, positions: np.ndarray, n_rows: int) -> np.ndarray:
    """``positions`` less the images a file split could not decode in the pass just made (it skips and lists them)."""
    skipped = getattr(drawn, "skipped", None) or {}
    keep = positions if not skipped else positions[~np.isin(np.arange(len(drawn)), list(skipped))]
    assert len(keep) == n_rows, f"{n_rows} rows for {len(keep)} readable images"
    return keep


def split_features(model: Classifier, split: Split, *, device: str | torch.device = "cpu", batch_size: int = 256,
                   max_images: int | None = None, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The model's penultimate features of a split's images (see :class:`ClassifierFeatures`).

    Batches are streamed to ``device``, conformed to the model there (channels, size) and the features stay there
    until the end (no host copy per batch). The model is moved to ``device`` and runs in eval mode without
    gradients; its modes come back afterwards.

    Args:
        model: a trained Classifier. split: the images (in memory, files or shards).
        max_images: at most this many images, drawn with ``seed`` and kept in the split's order (None: all).

    Returns:
        ``(features, positions)``: ``N x D`` float64 features and the ``N`` positions in ``split`` they belong to
        (unreadable files, if any, are left out).
    """
    device = torch.device(device)
    drawn, positions = _draw(split, max_images, seed)
    extractor = ClassifierFeatures(model.to(device))
    out = []
    with torch.inference_mode():
        for images, _ in drawn.batches(batch_size, device=device):
            x = conform(images.to(device, non_blocking=True), model)
            out.append(extractor.raw_features(to_float(x)))
    if not out:
        return np.zeros((0, extractor.num_features)), positions[:0]
    features = torch.cat(out).double().cpu().numpy()
    return features, _read(drawn, positions, len(features))


def split_pixels(split: Split, *, size: int = 32, max_images: int | None = None, seed: int = 0,
                 batch_size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """The raw-pixel baseline's inputs: each image area-averaged down to at most ``size x size``, flattened.

    Args:
        size: the largest side kept (a smaller side is left as it is); 32 keeps a probe on 20,000 images fast.
        max_images, seed: the same draw as :func:`split_features` (same arguments, same images).

    Returns:
        ``(pixels, positions)``: ``N x (C * h * w)`` float64 in [0, 1], and the positions in ``split``.
    """
    expect(isinstance(size, int) and size >= 1, "a pixel size >= 1", size)
    drawn, positions = _draw(split, max_images, seed)
    h, w = min(split.image_size[0], size), min(split.image_size[1], size)
    out = []
    for images, _ in drawn.batches(batch_size):
        x = to_float(images)
        if tuple(x.shape[-2:]) != (h, w):
            x = F.interpolate(x, size=(h, w), mode="area")  # the mean of each block of pixels: no aliasing
        out.append(x.flatten(1))
    if not out:
        return np.zeros((0, split.channels * h * w)), positions[:0]
    pixels = torch.cat(out).double().numpy()
    return pixels, _read(drawn, positions, len(pixels))


# ------------------------------------------------------------------------------------------------ the probe
def _array(values: Any, n: int, which: str) -> np.ndarray:
    """``values`` (a list, array or tensor) as a 1-d array of ``n``."""
    values = values.cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    expect(values.ndim == 1 and len(values) == n, f"one attribute value per {which} image ({n})",
           f"shape {values.shape}", error=DataError)
    return values


def _as_values(values: Any, n: int, which: str) -> np.ndarray:
    """``values`` as a 1-d array of ``n``, every one present."""
    values = _array(values, n, which)
    missing = int(_missing(values).sum())
    expect(not missing, f"a value for every {which} image", f"{missing} missing (None, NaN or empty)",
           "leave the images with no value out of the split", error=DataError)
    return values


def _missing(values: np.ndarray) -> np.ndarray:
    """Where ``values`` has no value: None, NaN, or an empty string (a manifest's empty cell)."""
    if values.dtype.kind not in "fOUS":
        return np.zeros(len(values), dtype=bool)
    return np.array([v is None or v != v or (isinstance(v, (str, bytes)) and not v.strip()) for v in values.tolist()],
                    dtype=bool)  # v != v: NaN


def _with_values(split: Split, values: Any, which: str) -> tuple[Split, np.ndarray, int]:
    """The split's images that have a value (an empty manifest cell leaves its image out), their values, and how
    many were left out."""
    values = _array(values, len(split), which)
    missing = _missing(values)
    if not missing.any():
        return split, values, 0
    keep = np.flatnonzero(~missing)
    return split.subset(torch.from_numpy(keep)), values[keep], int(missing.sum())


def _encode(train_values: np.ndarray, test_values: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray,
                                                                                     np.ndarray]:
    """The sorted distinct values and both splits' values as their indices; raise where a probe cannot be fair."""
    try:
        values, train_y = np.unique(train_values, return_inverse=True)
    except TypeError:  # a mix numpy cannot order, e.g. strings and numbers
        raise DataError(f"expected values of {name} of one type (strings or numbers), got a mix of "
                        f"{sorted({type(v).__name__ for v in train_values.tolist()})}") from None
    expect(len(values) >= 2, f"at least 2 distinct values of {name} in the training images",
           f"{len(values)} ({', '.join(map(str, values.tolist()))})",
           "an attribute every image shares cannot be predicted; check the column", error=DataError)
    unseen = sorted(set(np.unique(test_values).tolist()) - set(values.tolist()), key=str)
    expect(not unseen, f"the test images' values of {name} among the training images' {values.tolist()}",
           unseen, "the probe never saw them: drop or merge those rows", error=DataError)
    test_y = np.searchsorted(values, test_values)
    for split, y in (("training", train_y), ("test", test_y)):
        counts = np.bincount(y, minlength=len(values))
        rare = {str(v): int(c) for v, c in zip(values.tolist(), counts) if c < MIN_PER_VALUE}
        expect(not rare, f"at least {MIN_PER_VALUE} {split} images of each value of {name}", rare,
               "merge rare values, or drop their rows", error=DataError)
    return values, train_y, test_y


def _fit(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> tuple[np.ndarray, bool]:
    """Test-set probabilities ``N x K`` of an L2 logistic regression on standardized features; converged?"""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=PROBE_C, max_iter=MAX_ITER))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported in the result instead
        probe.fit(train_x, train_y)  # more than two classes: lbfgs fits the multinomial loss
    return probe.predict_proba(test_x), bool(probe[-1].n_iter_.max() < MAX_ITER)


def _auc(y: np.ndarray, proba: np.ndarray) -> float:
    """ROC AUC of ``proba`` (``N x K``) for labels ``y`` in ``0..K-1``: binary, or one-vs-rest macro."""
    from sklearn.metrics import roc_auc_score

    if proba.shape[1] == 2:
        return float(roc_auc_score(y == 1, proba[:, 1]))
    return float(roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=np.arange(proba.shape[1])))


def _weighted_auc(scores: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUC of ``scores`` (``N``) for ``positive`` vs the rest when image ``i`` counts ``weights[b, i]`` times, for
    each row ``b`` (``B x N``) at once; ties count one half (as sklearn). NaN where a side has no weight.

    With every weight 1 this is the Mann-Whitney AUC of the images; with bootstrap counts, that of a resample."""
    order = np.argsort(scores, kind="stable")
    s, pos, w = scores[order], positive[order], weights[:, order]
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # first image of each distinct score
    wp = np.add.reduceat(w * pos, starts, axis=1)  # B x U: positive weight at each distinct score
    wn = np.add.reduceat(w * ~pos, starts, axis=1)
    below = np.cumsum(wn, axis=1) - wn  # negative weight strictly below each score
    with np.errstate(invalid="ignore", divide="ignore"):
        return (wp * (below + 0.5 * wn)).sum(1) / (wp.sum(1) * wn.sum(1))


def _resampled_auc(y: np.ndarray, proba: np.ndarray, *, n_boot: int, seed: int) -> np.ndarray:
    """The AUC of ``n_boot`` resamples of the test images (drawn with replacement); NaN for a resample missing a
    value, whose one-vs-rest AUC is undefined."""
    n, k = proba.shape
    rng = np.random.default_rng(seed)
    out, per_chunk = [], max(1, _CHUNK // max(n, 1))
    for start in range(0, n_boot, per_chunk):
        b = min(per_chunk, n_boot - start)
        drawn = rng.integers(0, n, size=(b, n)) + n * np.arange(b)[:, None]
        weights = np.bincount(drawn.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        if k == 2:
            out.append(_weighted_auc(proba[:, 1], y == 1, weights))
        else:
            out.append(np.mean([_weighted_auc(proba[:, c], y == c, weights) for c in range(k)], axis=0))
    return np.concatenate(out)


def probe_auc(train_x: Any, train_values: Any, test_x: Any, test_values: Any, *, n_boot: int = 2000,
              level: float = 0.95, seed: int = 0, name: str = "the attribute") -> dict:
    """Fit a linear probe on ``train_x`` to predict ``train_values``; its AUC on the test set, with an interval.

    The features are standardized (with the training mean and std), then an L2 logistic regression with a fixed
    ``C`` (:data:`PROBE_C`) is fitted (multinomial for more than two values). The AUC is sklearn's
    ``roc_auc_score``: binary, or the one-vs-rest macro average for more than two values. The interval is the
    percentile bootstrap over test images; a resample that misses a value has no one-vs-rest AUC and is left out,
    and counted as ``undefined``.

    Args:
        train_x, test_x: ``N x D`` features (arrays or tensors). train_values, test_values: ``N`` values each
            (strings or numbers); each value needs at least :data:`MIN_PER_VALUE` images in each split, and the
            test values must all occur in training.
        n_boot: resamples (at least 100). level: the interval's coverage, in (0, 1). seed: seeds the resampling.
        name: the attribute, as error messages name it.

    Returns:
        ``{"auc", "interval": {"low", "high", "undefined"}, "level", "n_boot", "seed", "method", "average",
        "values", "train_counts", "test_counts", "n_train", "n_test", "dim", "converged"}``, JSON-ready.
    """
    expect(0 < level < 1, "a confidence level in (0, 1)", level)
    expect(isinstance(n_boot, int) and n_boot >= 100, "at least 100 bootstrap resamples for stable percentiles",
           n_boot)
    train_x, test_x = _matrix(train_x, "train_x"), _matrix(test_x, "test_x")
    expect(train_x.shape[1] == test_x.shape[1], "train_x and test_x of the same width",
           f"{train_x.shape[1]} and {test_x.shape[1]}", error=DataError)
    values, train_y, test_y = _encode(_as_values(train_values, len(train_x), "training"),
                                      _as_values(test_values, len(test_x), "test"), name)
    proba, converged = _fit(train_x, train_y, test_x)
    resampled = _resampled_auc(test_y, proba, n_boot=n_boot, seed=seed)
    return {"auc": _auc(test_y, proba), "interval": _interval(resampled, level), "level": level, "n_boot": n_boot,
            "seed": seed, "method": "percentile bootstrap over test images",
            "average": "binary" if len(values) == 2 else "one-vs-rest macro", "values": values.tolist(),
            "train_counts": np.bincount(train_y, minlength=len(values)).tolist(),
            "test_counts": np.bincount(test_y, minlength=len(values)).tolist(),
            "n_train": len(train_x), "n_test": len(test_x), "dim": int(train_x.shape[1]), "converged": converged}


def _matrix(x: Any, name: str) -> np.ndarray:
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    expect(x.ndim == 2 and len(x) > 0, f"{name} as a non-empty N x D array", f"shape {x.shape}", error=DataError)
    expect(bool(np.isfinite(x).all()), f"finite {name}", "NaN or infinite entries", error=DataError)
    return x.astype(np.float64, copy=False)


# ------------------------------------------------------------------------------------------------ the question
def probe_attribute(model: Classifier, train_split: Split, test_split: Split, train_values: Sequence | np.ndarray,
                    test_values: Sequence | np.ndarray, *, attribute: str, device: str | torch.device = "cpu",
                    n_boot: int = 2000, seed: int = 0, max_images: int | None = 20000, level: float = 0.95) -> dict:
    """Can the model see ``attribute``? A probe on its frozen features, next to a probe on raw pixels.

    The rule (:func:`is_shortcut`): the features predict the attribute *far better than chance*, so that the model
    can use it as a shortcut, when the interval's low end is above chance (0.5) and the AUC is at least
    :data:`SHORTCUT_AUC` (0.7). An interval above chance with a lower AUC is weak evidence; an interval that
    reaches down to chance (or below) is no evidence. The raw-pixel probe says how much of the attribute is
    plainly in the image.

    Args:
        model: the trained Classifier (frozen: only read). train_split, test_split: its data splits.
        train_values, test_values: the attribute's value for every image of each split, in the split's order
            (e.g. a manifest column); images with no value (None, NaN, "") are left out, and counted.
        attribute: its name, for the verdict. device: where the model runs.
        n_boot, level, seed: the bootstrap interval (and ``seed`` the draw of images).
        max_images: at most this many images of each split (a seeded draw): bounds the cost for large splits.

    Returns:
        ``{"attribute", "values", "n_train", "n_test", "features": {"auc", "interval", "dim", ...},
        "pixels": {...}, "missing": {"train", "test"}, "chance", "level", "rule", "verdict", "shortcut"}``,
        JSON-ready.
    """
    train_split, train_values, train_missing = _with_values(train_split, train_values, "training")
    test_split, test_values, test_missing = _with_values(test_split, test_values, "test")
    inputs = {"features": lambda s: split_features(model, s, device=device, max_images=max_images, seed=seed),
              "pixels": lambda s: split_pixels(s, max_images=max_images, seed=seed)}  # the same images
    probes = {}
    for kind, read in inputs.items():
        (trx, trp), (tex, tep) = read(train_split), read(test_split)
        probes[kind] = probe_auc(trx, train_values[trp], tex, test_values[tep], n_boot=n_boot, level=level,
                                 seed=seed, name=repr(attribute))
    shortcut = is_shortcut(probes["features"])
    return {"attribute": attribute, "values": probes["features"]["values"], "n_train": probes["features"]["n_train"],
            "n_test": probes["features"]["n_test"], "features": probes["features"], "pixels": probes["pixels"],
            "missing": {"train": train_missing, "test": test_missing}, "chance": CHANCE, "level": level,
            "rule": f"shortcut when the interval's low end is above {CHANCE} and the AUC is at least {SHORTCUT_AUC}",
            "verdict": verdict(attribute, probes["features"], probes["pixels"]), "shortcut": shortcut}


def is_shortcut(probe: dict) -> bool:
    """The features predict the attribute far better than chance: the interval's low end is above chance and the
    AUC is at least :data:`SHORTCUT_AUC`."""
    low = probe["interval"]["low"]
    return low is not None and low > CHANCE and probe["auc"] >= SHORTCUT_AUC


def verdict(attribute: str, features: dict, pixels: dict) -> str:
    """One plain sentence: does the model's features probe show the attribute, with its figures."""
    ci, level = features["interval"], f"{features['level'] * 100:g} % CI"
    interval = "undefined" if ci["low"] is None else f"[{ci['low']:.2f}, {ci['high']:.2f}]"
    figures = f"AUC {features['auc']:.2f}, {level} {interval}; raw pixels {pixels['auc']:.2f}"
    if is_shortcut(features):
        return (f"The model's features predict {attribute!r} far better than chance ({figures}): the model can use "
                f"it as a shortcut.")
    if ci["low"] is not None and ci["low"] > CHANCE:
        return (f"Weak evidence: the model's features predict {attribute!r} somewhat better than chance ({figures}), "
                f"below the AUC of {SHORTCUT_AUC} this report calls a usable shortcut.")
    return (f"No evidence that the model's features predict {attribute!r}: the AUC is not reliably above chance "
            f"({figures}).")
