"""The confusion matrix and every metric derived from it, per class (one-vs-rest) and averaged.

Conventions (checked against scikit-learn in the tests):
- Rows of the confusion matrix are true classes, columns predicted classes.
- A ratio whose denominator is zero (e.g. precision of a class never predicted) is reported as 0.0, as
  scikit-learn does with ``zero_division=0``, and its key is listed under ``undefined`` so it is never silent.
- ``macro`` averages over all classes, including classes absent from the data (scikit-learn's ``labels=``
  behaviour); ``weighted`` weights each class by its support, so absent classes do not count there.
- ``balanced_accuracy`` is the mean sensitivity over classes that occur (scikit-learn's definition).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from optik.core.errors import ConfigError

PER_CLASS = ("sensitivity", "specificity", "precision", "npv", "f1", "fpr", "fnr")
# Above this many classes the K x K confusion matrix is not kept (2,000^2 int64 = 32 MB, and a JSON of 4 million
# cells; 10,000 classes would be 800 MB): reports carry per-class counts instead.
MAX_MATRIX_CLASSES = 2000
# metric -> (numerator, denominator) in terms of the one-vs-rest counts
_RATIOS = {
    "sensitivity": ("tp", ("tp", "fn")),   # recall, true positive rate
    "specificity": ("tn", ("tn", "fp")),   # true negative rate
    "precision": ("tp", ("tp", "fp")),     # positive predictive value (PPV)
    "npv": ("tn", ("tn", "fn")),           # negative predictive value
    "fpr": ("fp", ("fp", "tn")),           # type I error rate = 1 - specificity
    "fnr": ("fn", ("fn", "tp")),           # type II error rate = 1 - sensitivity
}


def confusion_matrix(y_true: Sequence[int], y_pred: Sequence[int], num_classes: int) -> np.ndarray:
    """``K x K`` int64 counts; rows = true class, columns = predicted class."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"expected y_true and y_pred of one shape, got {y_true.shape} and {y_pred.shape}")
    for name, y in (("y_true", y_true), ("y_pred", y_pred)):
        if y.size and (y.min() < 0 or y.max() >= num_classes):
            raise ValueError(f"expected {name} in [0, {num_classes}), got values in [{y.min()}, {y.max()}]")
    return np.bincount(y_true * num_classes + y_pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def one_vs_rest_counts(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per class ``tp, fp, tn, fn`` (int64 arrays of length K) from a confusion matrix."""
    cm = np.asarray(cm, dtype=np.int64)
    tp = np.diag(cm)
    fp = cm.sum(axis=0) - tp
    fn = cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    return {"tp": tp, "fp": fp, "tn": tn, "fn": fn}


def _ratio(num: np.ndarray, den: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """num / den in float64 with 0.0 where den == 0; also the mask of those undefined entries."""
    num, den = num.astype(np.float64), den.astype(np.float64)
    undefined = den == 0
    return np.divide(num, den, out=np.zeros_like(num), where=~undefined), undefined


def counts_from_labels(y_true, y_pred, num_classes: int) -> dict[str, np.ndarray]:
    """Per class ``tp, fp, tn, fn`` straight from the labels, in memory linear in the classes (no ``K x K``)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    tp = np.bincount(y_true[y_true == y_pred], minlength=num_classes)
    fn = np.bincount(y_true, minlength=num_classes) - tp
    fp = np.bincount(y_pred, minlength=num_classes) - tp
    return {"tp": tp, "fp": fp, "tn": len(y_true) - tp - fp - fn, "fn": fn}


def metrics_from_confusion(cm: np.ndarray, classes: Sequence[str]) -> dict:
    """Everything derived from the confusion matrix: per class, macro, weighted, accuracy, balanced accuracy."""
    cm = np.asarray(cm, dtype=np.int64)
    k = len(classes)
    if cm.shape != (k, k):
        raise ValueError(f"expected a {k} x {k} confusion matrix for {k} classes, got shape {cm.shape}")
    return metrics_from_counts(one_vs_rest_counts(cm), classes, cm=cm)


def metrics_from_counts(counts: dict[str, np.ndarray], classes: Sequence[str], *, cm: np.ndarray | None = None) -> dict:
    """The report of :func:`metrics_from_confusion` from one-vs-rest counts; without ``cm`` (too many classes to
    keep one) ``confusion_matrix`` and its normalized form are None."""
    k = len(classes)
    support = counts["tp"] + counts["fn"]
    values, undefined = {}, []
    for name, (num, den) in _RATIOS.items():
        values[name], bad = _ratio(counts[num], sum(counts[d] for d in den))
        undefined += [f"per_class.{classes[i]}.{name}" for i in np.flatnonzero(bad)]
    values["f1"], bad = _ratio(2 * counts["tp"], 2 * counts["tp"] + counts["fp"] + counts["fn"])
    undefined += [f"per_class.{classes[i]}.f1" for i in np.flatnonzero(bad)]

    total = int(support.sum())
    per_class = {}
    for i, c in enumerate(classes):
        row = {n: int(counts[n][i]) for n in ("tp", "fp", "tn", "fn")}
        row["support"] = int(support[i])
        row.update({n: float(values[n][i]) for n in PER_CLASS})
        row["type_i_errors"], row["type_ii_errors"] = row["fp"], row["fn"]
        per_class[c] = row
    weights = support / total if total else np.zeros(k)
    occurring = support > 0
    recall_present = values["sensitivity"][occurring]
    return {
        "classes": list(classes),
        "n": total,
        "confusion_matrix": cm.tolist() if cm is not None else None,
        "confusion_matrix_normalized": (_ratio(cm, np.broadcast_to(cm.sum(1, keepdims=True), cm.shape))[0].tolist()
                                        if cm is not None else None),
        "accuracy": float(counts["tp"].sum() / total) if total else 0.0,
        "balanced_accuracy": float(recall_present.mean()) if recall_present.size else 0.0,
        "type_i_errors": int(counts["fp"].sum()),   # over all one-vs-rest problems (= misclassified images)
        "type_ii_errors": int(counts["fn"].sum()),
        "per_class": per_class,
        "macro": {n: float(values[n].mean()) for n in PER_CLASS},
        "weighted": {n: float((values[n] * weights).sum()) for n in PER_CLASS},
        "undefined": undefined,
    }


def top_k_accuracy(probs: np.ndarray, y_true: np.ndarray, k: int) -> float:
    """Share of images whose true class is among the ``k`` highest scores (ties broken by class order)."""
    probs, y_true = np.asarray(probs), np.asarray(y_true)
    k = min(k, probs.shape[1])
    top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return float((top == y_true[:, None]).any(axis=1).mean()) if len(y_true) else 0.0


def classification_report(probs: np.ndarray, y_true: np.ndarray, classes: Sequence[str], *,
                          positive: str | None = None, threshold: float = 0.5,
                          top_k: Sequence[int] = (1, 3, 5)) -> dict:
    """All metrics of a classifier's probabilities ``N x K`` against labels ``N``.

    Args:
        positive: for a binary task, the class that counts as positive (default: the second class, index 1).
            Its probability is compared with ``threshold``; the ``binary`` block reports that operating point.
        threshold: decision threshold on the positive class's probability (binary only).
        top_k: the ``k`` of the top-k accuracies to report (those ``< K`` only, plus 1).
    """
    probs, y_true = np.asarray(probs, dtype=np.float64), np.asarray(y_true, dtype=np.int64)
    k = len(classes)
    if probs.ndim != 2 or probs.shape[1] != k:
        raise ValueError(f"expected probabilities of shape N x {k}, got {probs.shape}")
    y_pred = predicted_labels(probs, classes, positive=positive, threshold=threshold)
    if k <= MAX_MATRIX_CLASSES:
        report = metrics_from_confusion(confusion_matrix(y_true, y_pred, k), classes)
    else:  # a K x K matrix would be K^2 counts in memory and in the JSON: per-class counts only
        report = metrics_from_counts(counts_from_labels(y_true, y_pred, k), classes)
    report["top_k_accuracy"] = {str(j): top_k_accuracy(probs, y_true, j) for j in sorted({1, *top_k})
                                if j < k or j == 1}
    if k == 2:
        pos = positive_index(classes, positive)
        report["binary"] = {"positive": classes[pos], "negative": classes[1 - pos], "threshold": threshold,
                            **report["per_class"][classes[pos]]}
    return report


def positive_index(classes: Sequence[str], positive: str | None) -> int:
    """Index of the positive class of a binary task (default: the second class)."""
    if len(classes) != 2:
        raise ConfigError(f"--positive applies to binary tasks; this one has {len(classes)} classes")
    if positive is None:
        return 1
    if positive in classes:
        return list(classes).index(positive)
    raise ConfigError(f"expected --positive to name one of the classes {list(classes)}, got {positive!r}")


def predicted_labels(probs: np.ndarray, classes: Sequence[str], *, positive: str | None = None,
                     threshold: float = 0.5) -> np.ndarray:
    """The predicted class per image: argmax, or for a binary task ``P(positive) >= threshold``."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(classes) != 2:
        if positive is not None:
            raise ConfigError(f"--positive applies to binary tasks; this one has {len(classes)} classes")
        return probs.argmax(axis=1)
    pos = positive_index(classes, positive)
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"expected a threshold in [0, 1], got {threshold}")
    return np.where(probs[:, pos] >= threshold, pos, 1 - pos)
