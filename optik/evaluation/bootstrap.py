"""Bootstrapped confidence intervals of the confusion-matrix metrics.

The percentile bootstrap (Efron & Tibshirani 1993, ch. 13): draw ``n_boot`` resamples of the evaluated images
with replacement, recompute the confusion matrix of each, and report the ``(1 - level) / 2`` and
``(1 + level) / 2`` quantiles of each metric. Resampling images (not pixels, not classes) treats the test set as a
sample of the population the model will meet, which is the uncertainty a sensitivity of "0.93 on 120 patients"
carries. A metric whose denominator is empty in a resample (no positives drawn) is left out of that metric's
quantiles; how often that happened is reported as ``undefined``.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from optik.core.errors import ConfigError

METRICS = ("sensitivity", "specificity", "precision", "npv")
_CHUNK = 4_000_000  # resampled indices held at once (int64: 32 MB)
MAX_CELLS = 4_000_000  # resamples x classes: three int64 count arrays and five rate arrays of 32 MB at most


def resampled_counts(y_true, y_pred, num_classes: int, *, n_boot: int, seed: int) -> dict[str, np.ndarray]:
    """Per resample of the ``(y_true, y_pred)`` pairs and per class: true positives, images of the class, images
    predicted as it (``n_boot x K`` each). The one-vs-rest rates need nothing more, so no ``K x K`` confusion
    matrix is built: memory grows with classes times resamples, never with classes squared."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    n, k = len(y_true), num_classes
    correct = (y_true == y_pred).astype(np.float64)
    rng = np.random.default_rng(seed)
    out = {name: np.empty((n_boot, k), dtype=np.int64) for name in ("tp", "true", "pred")}
    per_chunk = max(1, _CHUNK // max(n, 1))
    for start in range(0, n_boot, per_chunk):
        b = min(per_chunk, n_boot - start)
        drawn = rng.integers(0, n, size=(b, n))
        offset = k * np.arange(b)[:, None]
        for name, labels, weights in (("true", y_true, None), ("pred", y_pred, None), ("tp", y_true, correct)):
            codes = (labels[drawn] + offset).ravel()
            counted = np.bincount(codes, weights=None if weights is None else weights[drawn].ravel(),
                                  minlength=b * k)
            out[name][start:start + b] = np.rint(counted).astype(np.int64).reshape(b, k)
    return out


def _rates(counts: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
    """Accuracy ``B`` and one-vs-rest rates ``B x K`` from resampled counts; NaN where 0/0."""
    tp = counts["tp"].astype(np.float64)
    fn, fp = counts["true"] - tp, counts["pred"] - tp
    tn = n - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"accuracy": tp.sum(1) / n, "sensitivity": tp / (tp + fn), "specificity": tn / (tn + fp),
                "precision": tp / (tp + fp), "npv": tn / (tn + fn)}


def _resampled_accuracy(y_true, y_pred, *, n_boot: int, seed: int) -> np.ndarray:
    """Accuracy of each resample (the same resamples as above), in memory independent of the classes."""
    correct = np.asarray(y_true) == np.asarray(y_pred)
    n, rng = len(correct), np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK // max(n, 1))
    return np.concatenate([correct[rng.integers(0, n, size=(min(per_chunk, n_boot - s), n))].mean(1)
                           for s in range(0, n_boot, per_chunk)])


def _interval(values: np.ndarray, level: float) -> dict:
    ok = values[np.isfinite(values)]
    if not ok.size:
        return {"low": None, "high": None, "undefined": int(values.size)}
    low, high = np.quantile(ok, [(1 - level) / 2, (1 + level) / 2])
    return {"low": float(low), "high": float(high), "undefined": int(values.size - ok.size)}


def format_interval(ci: dict | None) -> str:
    """``[low, high]`` to three decimals; ``undefined`` for a metric with no defined resample, ``""`` for none."""
    if not ci:
        return ""
    return "undefined" if ci.get("low") is None else f"[{ci['low']:.3f}, {ci['high']:.3f}]"


def bootstrap_intervals(y_true, y_pred, classes: Sequence[str], *, n_boot: int = 2000, level: float = 0.95,
                        seed: int = 0) -> dict:
    """Percentile-bootstrap intervals of accuracy and of each class's sensitivity, specificity, PPV and NPV.

    Args:
        y_true, y_pred: ``N`` class indices (for a binary task, ``y_pred`` at the chosen threshold).
        classes: class names, index = label.
        n_boot: resamples; 2,000 puts the Monte Carlo error of a 95 % endpoint near 0.005 for n ~ 1,000.
        level: coverage of the interval, e.g. 0.95.
        seed: seeds the resampling; the same seed gives the same intervals.

    Returns:
        ``{"method", "level", "n_boot", "seed", "accuracy": {low, high, undefined},
        "per_class": {class: {metric: {low, high, undefined}}}}``.
    """
    if not 0 < level < 1:
        raise ConfigError(f"expected a confidence level in (0, 1), got {level}")
    if n_boot < 100:
        raise ConfigError(f"expected at least 100 bootstrap resamples for stable percentiles, got {n_boot}")
    if len(y_true) == 0:
        raise ValueError("expected at least one image to bootstrap, got none")
    out = {"method": "percentile bootstrap over images", "level": level, "n_boot": n_boot, "seed": seed}
    if n_boot * len(classes) > MAX_CELLS:  # checked before allocating: degrade, never crash
        out["accuracy"] = _interval(_resampled_accuracy(y_true, y_pred, n_boot=n_boot, seed=seed), level)
        out["per_class"] = {}
        out["per_class_skipped"] = (f"{len(classes):,} classes x {n_boot:,} resamples is over {MAX_CELLS:,} "
                                    f"resampled counts: per-class intervals were not computed (fewer resamples, "
                                    f"--bootstrap N, or fewer classes would allow them)")
        return out
    rates = _rates(resampled_counts(y_true, y_pred, len(classes), n_boot=n_boot, seed=seed), len(y_true))
    out["accuracy"] = _interval(rates["accuracy"], level)
    out["per_class"] = {c: {m: _interval(rates[m][:, i], level) for m in METRICS} for i, c in enumerate(classes)}
    return out
