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


def resampled_confusions(y_true, y_pred, num_classes: int, *, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot x K x K`` confusion matrices of resamples of the ``(y_true, y_pred)`` pairs (rows = true)."""
    codes = np.asarray(y_true, dtype=np.int64) * num_classes + np.asarray(y_pred, dtype=np.int64)
    n, kk = len(codes), num_classes * num_classes
    rng = np.random.default_rng(seed)
    out = np.empty((n_boot, kk), dtype=np.int64)
    per_chunk = max(1, _CHUNK // max(n, 1))
    for start in range(0, n_boot, per_chunk):
        b = min(per_chunk, n_boot - start)
        drawn = codes[rng.integers(0, n, size=(b, n))] + kk * np.arange(b)[:, None]
        out[start:start + b] = np.bincount(drawn.ravel(), minlength=b * kk).reshape(b, kk)
    return out.reshape(n_boot, num_classes, num_classes)


def _rates(cms: np.ndarray) -> dict[str, np.ndarray]:
    """Accuracy ``B`` and one-vs-rest rates ``B x K`` of a stack of confusion matrices; NaN where 0/0."""
    tp = np.diagonal(cms, axis1=1, axis2=2).astype(np.float64)
    fp, fn = cms.sum(axis=1) - tp, cms.sum(axis=2) - tp
    tn = cms.sum(axis=(1, 2))[:, None] - tp - fp - fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return {"accuracy": tp.sum(1) / cms.sum(axis=(1, 2)), "sensitivity": tp / (tp + fn),
                "specificity": tn / (tn + fp), "precision": tp / (tp + fp), "npv": tn / (tn + fn)}


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
    rates = _rates(resampled_confusions(y_true, y_pred, len(classes), n_boot=n_boot, seed=seed))
    return {"method": "percentile bootstrap over images", "level": level, "n_boot": n_boot, "seed": seed,
            "accuracy": _interval(rates["accuracy"], level),
            "per_class": {c: {m: _interval(rates[m][:, i], level) for m in METRICS} for i, c in enumerate(classes)}}
