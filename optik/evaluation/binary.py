"""Binary tasks: ROC and precision-recall curves, their areas, and choosing the operating point.

Conventions (checked against scikit-learn in the tests):
- ``scores`` are the positive class's probabilities; an image is called positive when ``score >= threshold``.
- The curves have one point per distinct score, highest threshold first, plus the ``(0, 0)`` start of the ROC
  curve at threshold ``+inf`` (scikit-learn's ``roc_curve(drop_intermediate=False)``).
- ROC AUC is the trapezoidal area under the ROC curve (= the probability that a random positive scores above a
  random negative, ties counting half). The area under the precision-recall curve is reported as average
  precision, ``sum_n (R_n - R_{n-1}) P_n``, a step function without the optimistic linear interpolation of a
  trapezoid (scikit-learn's ``average_precision_score``; Davis & Goadrich 2006 explain why PR points must not be
  joined linearly).
"""
from __future__ import annotations

import numpy as np

from optik.core.errors import ConfigError


def _check(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive).astype(bool)
    if scores.ndim != 1 or scores.shape != positive.shape:
        raise ValueError(f"expected scores and labels as two vectors of one length, got {scores.shape} and "
                         f"{positive.shape}")
    return scores, positive


def _counts_by_threshold(scores: np.ndarray, positive: np.ndarray):
    """Distinct thresholds (descending) and the cumulative TP and FP counts of ``score >= threshold``."""
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each run of equal scores
    tp = np.cumsum(p)[last]
    fp = (last + 1) - tp
    return s[last], tp, fp


def roc_curve(scores, positive) -> dict[str, np.ndarray]:
    """False and true positive rates for every distinct threshold.

    Args:
        scores: ``N`` positive-class probabilities (any monotone score works).
        positive: ``N`` booleans, True where the image truly is positive.

    Returns:
        ``fpr``, ``tpr``, ``thresholds`` (descending, starting at ``inf``), ``auc``.
    """
    scores, positive = _check(scores, positive)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"a ROC curve needs both classes; got {n_pos} positive and {n_neg} negative images")
    thr, tp, fp = _counts_by_threshold(scores, positive)
    fpr, tpr = np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1])) / 2)  # trapezoids
    return {"fpr": fpr, "tpr": tpr, "thresholds": np.r_[np.inf, thr], "auc": auc}


def precision_recall_curve(scores, positive) -> dict[str, np.ndarray]:
    """Precision and recall for every distinct threshold, highest threshold first.

    Returns:
        ``precision``, ``recall``, ``thresholds`` (descending) and ``average_precision``; the area under the
        curve as average precision (see the module docstring).
    """
    scores, positive = _check(scores, positive)
    n_pos = int(positive.sum())
    if n_pos == 0:
        raise ValueError("a precision-recall curve needs positive images; got none")
    thr, tp, fp = _counts_by_threshold(scores, positive)
    precision, recall = tp / (tp + fp), tp / n_pos
    ap = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return {"precision": precision, "recall": recall, "thresholds": thr, "average_precision": ap}


def threshold_for(scores, positive, *, sensitivity: float | None = None,
                  specificity: float | None = None) -> float:
    """The threshold that reaches a target sensitivity (or specificity) and is best on the other rate.

    For a target sensitivity: the fewest images called positive (so the best specificity) whose sensitivity is at
    least the target. For a target specificity: the most images called positive (the best sensitivity) whose
    specificity is at least the target. Exactly one target is given.

    Every threshold between the chosen image's score and the next lower score calls the same images positive;
    the midpoint of that gap is returned, so that a new image scoring just below the chosen one is not decided by
    where in the gap the threshold happens to sit (with a small validation split the gap is often wide).

    Raises:
        ConfigError: a target outside ``(0, 1]``, or both / neither given.
    """
    if (sensitivity is None) == (specificity is None):
        raise ConfigError("expected exactly one of a target sensitivity or a target specificity")
    target = sensitivity if sensitivity is not None else specificity
    if not 0.0 < target <= 1.0:
        name = "sensitivity" if sensitivity is not None else "specificity"
        raise ConfigError(f"expected a target {name} in (0, 1], got {target}")
    roc = roc_curve(scores, positive)
    thr, tpr, tnr = roc["thresholds"][1:], roc["tpr"][1:], 1.0 - roc["fpr"][1:]  # descending thresholds
    if sensitivity is not None:
        j = int(np.argmax(tpr >= sensitivity - 1e-12))  # tpr rises as the threshold falls; tpr[-1] = 1
    else:
        ok = np.flatnonzero(tnr >= specificity - 1e-12)
        if not ok.size:  # the top score belongs to a negative: only calling none positive reaches the target
            return float(np.nextafter(thr[0], np.inf))
        j = int(ok[-1])
    return float((thr[j] + thr[j + 1]) / 2) if j + 1 < len(thr) else float(thr[j])


def operating_point(scores, positive, threshold: float) -> dict:
    """TP, FP, TN, FN and the rates at one threshold (``score >= threshold`` is called positive)."""
    scores, positive = _check(scores, positive)
    called = scores >= threshold
    tp, fp = int((called & positive).sum()), int((called & ~positive).sum())
    fn, tn = int((~called & positive).sum()), int((~called & ~positive).sum())

    def ratio(a: int, b: int) -> float:
        return a / b if b else 0.0

    return {"threshold": float(threshold), "tp": tp, "fp": fp, "tn": tn, "fn": fn,
            "sensitivity": ratio(tp, tp + fn), "specificity": ratio(tn, tn + fp),
            "precision": ratio(tp, tp + fp), "npv": ratio(tn, tn + fn),
            "accuracy": ratio(tp + tn, len(scores))}
