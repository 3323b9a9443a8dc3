"""Run a Classifier over images and compute its report: metrics, intervals, calibration, binary curves."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from optik.core.errors import ConfigError
from optik.data.batches import TensorBatches
from optik.evaluation.binary import operating_point, precision_recall_curve, roc_curve, threshold_for
from optik.evaluation.bootstrap import bootstrap_intervals
from optik.core.modes import eval_mode
from optik.evaluation.calibration import (TEMPERATURE_RANGE, apply_temperature, calibration_bins, fit_temperature,
                                          softmax)
from optik.evaluation.metrics import classification_report, positive_index, predicted_labels
from optik.models.classifier import Classifier

FEW_POSITIVES = 30  # below this, an interval on sensitivity spans tens of points: say so


@torch.inference_mode()
def predict_logits(model: Classifier, images: torch.Tensor, *, batch_size: int = 512) -> np.ndarray:
    """Logits ``N x K`` (float64) of ``uint8`` or ``[0, 1]`` images ``N x C x H x W``, in eval mode (every
    submodule gets its own mode back after)."""
    device = next(model.parameters()).device
    out = []
    with eval_mode(model):
        for x, _ in TensorBatches(images, torch.zeros(len(images), dtype=torch.long), batch_size=batch_size):
            out.append(model(x.to(device)).double())
    return torch.cat(out).cpu().numpy() if out else np.zeros((0, model.num_classes))


def predict_proba(model: Classifier, images: torch.Tensor, *, batch_size: int = 512) -> np.ndarray:
    """Softmax probabilities ``N x K`` (float64) of ``uint8`` or ``[0, 1]`` images ``N x C x H x W``."""
    return softmax(predict_logits(model, images, batch_size=batch_size))


def evaluate_model(model: Classifier, images: torch.Tensor, labels: torch.Tensor, *, positive: str | None = None,
                   threshold: float = 0.5, top_k: Sequence[int] = (1, 3, 5), batch_size: int = 512) -> dict:
    """The classification report (metrics only) of ``model`` on ``images`` with true ``labels``."""
    probs = predict_proba(model, images, batch_size=batch_size)
    return classification_report(probs, labels.cpu().numpy(), model.classes, positive=positive,
                                 threshold=threshold, top_k=top_k)


@dataclass(frozen=True)
class EvalOptions:
    """How to evaluate beyond the confusion matrix.

    Args:
        positive: binary tasks: the positive class (default: the second class).
        threshold: binary tasks: threshold on ``P(positive)``; ignored when a target is given.
        target_sensitivity / target_specificity: binary tasks: choose the threshold reaching this rate on the
            validation split (or, without one, on the evaluated split, flagged as optimistic).
        calibrate: fit a temperature on the validation split and report everything on the scaled probabilities.
        n_boot, level, seed: the bootstrap intervals (``n_boot=0``: none).
        n_bins: calibration bins.
    """

    positive: str | None = None
    threshold: float = 0.5
    target_sensitivity: float | None = None
    target_specificity: float | None = None
    calibrate: bool = False
    n_boot: int = 2000
    level: float = 0.95
    seed: int = 0
    n_bins: int = 15

    @property
    def needs_validation(self) -> bool:
        return self.calibrate or self.target_sensitivity is not None or self.target_specificity is not None


@dataclass
class Evaluation:
    """A report (JSON-ready) and the arrays its figures are drawn from."""

    report: dict
    probs: np.ndarray
    y_true: np.ndarray
    curves: dict = field(default_factory=dict)  # binary: {"roc": ..., "pr": ..., "points": [...]}
    calibrated_bins: dict | None = None


def full_evaluation(logits: np.ndarray, y_true: np.ndarray, classes: Sequence[str], opts: EvalOptions, *,
                    val: tuple[np.ndarray, np.ndarray] | None = None) -> Evaluation:
    """Everything a report holds, from the evaluated images' logits ``N x K`` and, for calibration or a target
    rate, the validation split's ``(logits, y_true)``. Temperature scaling is fitted on the logits."""
    logits, y_true = np.asarray(logits, dtype=np.float64), np.asarray(y_true, dtype=np.int64)
    if opts.calibrate and (val is None or len(val[1]) == 0):
        raise ConfigError("temperature scaling needs a validation split; this run has none (val_fraction 0)")
    flags: list[str] = []
    probs = softmax(logits)
    calibration = {"before": calibration_bins(probs, y_true, n_bins=opts.n_bins)}
    if opts.calibrate:
        temperature = fit_temperature(*val)
        if temperature in TEMPERATURE_RANGE:
            flags.append(f"the fitted temperature {temperature} is at its bound: the validation split is perfectly "
                         "separated (or nearly), so it cannot tell how confident the model should be")
        probs = apply_temperature(logits, temperature)
        val = (apply_temperature(val[0], temperature), val[1])
        calibration.update(temperature=temperature, fitted_on="val",
                           after=calibration_bins(probs, y_true, n_bins=opts.n_bins))
    elif val is not None:
        val = (softmax(val[0]), val[1])
    threshold, source = _threshold(probs, y_true, classes, opts, val, flags)
    report = classification_report(probs, y_true, classes, positive=opts.positive, threshold=threshold)
    report["calibration"] = calibration
    ev = Evaluation(report, probs, y_true, calibrated_bins=calibration.get("after"))
    if len(classes) == 2:
        _binary_block(ev, classes, opts, threshold, source, flags)
    if opts.n_boot:
        y_pred = predicted_labels(probs, classes, positive=opts.positive, threshold=threshold)
        report["intervals"] = bootstrap_intervals(y_true, y_pred, classes, n_boot=opts.n_boot, level=opts.level,
                                                  seed=opts.seed)
        if "binary" in report:
            report["binary"]["intervals"] = report["intervals"]["per_class"][report["binary"]["positive"]]
        if "per_class_skipped" in report["intervals"]:
            flags.append(report["intervals"]["per_class_skipped"])
    if report["confusion_matrix"] is None:
        flags.append(f"{len(classes):,} classes: the {len(classes):,} x {len(classes):,} confusion matrix is not kept "
                     f"(per-class counts are); figures/confusion_matrix.png is not drawn")
    report["flags"] = flags
    return ev


def check_binary_options(classes, opts: EvalOptions) -> None:
    """Refuse a threshold or a target rate for a task that is not binary (before any image is predicted)."""
    if len(classes) == 2:
        return
    if opts.threshold != 0.5:
        raise ConfigError(f"--threshold applies to binary tasks; this one has {len(classes)} classes (a multi-class "
                          f"prediction is the most probable class), got threshold {opts.threshold}")
    if opts.target_sensitivity is not None or opts.target_specificity is not None:
        raise ConfigError(f"a target sensitivity or specificity applies to binary tasks; this one has "
                          f"{len(classes)} classes")


def _threshold(probs, y_true, classes, opts: EvalOptions, val, flags: list[str]) -> tuple[float, str]:
    """The binary threshold and where it came from: given, or chosen for a target rate on val (or test)."""
    check_binary_options(classes, opts)
    target = {"sensitivity": opts.target_sensitivity, "specificity": opts.target_specificity}
    target = {k: v for k, v in target.items() if v is not None}
    if not target:
        return opts.threshold, "given"
    pos = positive_index(classes, opts.positive)
    if val is not None and len(np.unique(val[1])) == 2:
        scores, labels, source = val[0][:, pos], val[1] == pos, "val"
    else:
        scores, labels, source = probs[:, pos], y_true == pos, "evaluated split"
        flags.append("the threshold was chosen on the evaluated split itself (no validation split with both "
                     "classes): the rates at it are optimistic")
    return threshold_for(scores, labels, **target), source


def _binary_block(ev: Evaluation, classes, opts: EvalOptions, threshold: float, source: str, flags: list[str]):
    pos = positive_index(classes, opts.positive)
    scores, positive = ev.probs[:, pos], ev.y_true == pos
    b = ev.report["binary"]
    b["threshold_source"] = source
    if opts.target_sensitivity is not None:
        b["target"] = {"sensitivity": opts.target_sensitivity}
    elif opts.target_specificity is not None:
        b["target"] = {"specificity": opts.target_specificity}
    if positive.all() or not positive.any():
        flags.append("only one class in the evaluated images: no ROC or precision-recall curve")
        return
    roc, pr = roc_curve(scores, positive), precision_recall_curve(scores, positive)
    b["roc_auc"], b["average_precision"] = roc["auc"], pr["average_precision"]
    b["prevalence"] = float(positive.mean())
    points = [{**operating_point(scores, positive, threshold), "label": f"threshold {threshold:.3g} ({source})"}]
    at_half = operating_point(scores, positive, 0.5)
    if source != "given" and (at_half["tp"], at_half["fp"]) != (points[0]["tp"], points[0]["fp"]):
        points.append({**at_half, "label": "threshold 0.5"})
    ev.curves = {"roc": roc, "pr": pr, "points": points}
    if positive.sum() < FEW_POSITIVES:
        flags.append(f"only {int(positive.sum())} positive images: intervals on sensitivity are wide")
