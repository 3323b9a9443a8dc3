"""Calibration: does a confidence of 0.9 mean right nine times in ten?

- Expected calibration error (Naeini et al. 2015; Guo et al. 2017, https://arxiv.org/abs/1706.04599): the top-1
  confidences are put in ``n_bins`` equal-width bins over ``[0, 1]``, right-closed ``(a, b]`` as in Guo et al.'s
  code (torchmetrics closes them on the left; the two agree except for confidences exactly on an edge); ECE is
  the sample-weighted mean of ``|accuracy - mean confidence|`` over bins, MCE the largest gap.
- Temperature scaling (Guo et al. 2017): logits are divided by one scalar ``T > 0`` fitted on the validation split
  by minimizing the negative log-likelihood. It changes confidences, never the top-1 class. It is fitted and applied
  on the logits themselves (in float64), as Guo et al. do. Probabilities do not suffice in practice: the identity
  ``softmax(log p / T) = softmax(z / T)`` holds only while no probability underflows or is clipped, and a class 27.6
  nats below the top already has ``p < 1e-12`` (with 2 % of true-class probabilities clipped at 1e-12, a fit on
  probabilities gave T = 6.34 where the logits give 8.06).
"""
from __future__ import annotations

import numpy as np
import torch

from optik.core.errors import ConfigError

_EPS = 1e-12
# A perfectly separated validation split drives the NLL-optimal temperature to 0 (or infinity): bounded here, and
# the evaluation flags a temperature at a bound.
TEMPERATURE_RANGE = (0.05, 20.0)


def calibration_bins(probs, y_true, *, n_bins: int = 15) -> dict:
    """Per bin: count, mean confidence and accuracy of the top-1 prediction; plus ECE, MCE, NLL and Brier score.

    Args:
        probs: ``N x K`` probabilities (rows sum to 1).
        y_true: ``N`` true class indices.
        n_bins: equal-width confidence bins over ``[0, 1]``.
    """
    probs, y_true = np.asarray(probs, dtype=np.float64), np.asarray(y_true, dtype=np.int64)
    if n_bins < 1:
        raise ConfigError(f"expected n_bins >= 1, got {n_bins}")
    conf, correct = probs.max(axis=1), probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)  # (a, b] bins
    count = np.bincount(which, minlength=n_bins)
    with np.errstate(invalid="ignore"):
        mean_conf = np.bincount(which, weights=conf, minlength=n_bins) / count
        acc = np.bincount(which, weights=correct, minlength=n_bins) / count
    gap = np.abs(acc - mean_conf)
    used = count > 0
    n = len(conf)
    onehot = np.eye(probs.shape[1])[y_true]
    return {
        "n_bins": n_bins, "edges": edges.tolist(), "count": count.tolist(),
        "confidence": [float(v) if u else None for v, u in zip(mean_conf, used)],
        "accuracy": [float(v) if u else None for v, u in zip(acc, used)],
        "ece": float((count[used] * gap[used]).sum() / n) if n else 0.0,
        "mce": float(gap[used].max()) if used.any() else 0.0,
        "nll": float(-np.log(np.clip(probs[np.arange(n), y_true], _EPS, None)).mean()) if n else 0.0,
        "brier": float(((probs - onehot) ** 2).sum(axis=1).mean()) if n else 0.0,
    }


def fit_temperature(logits, y_true, *, max_iter: int = 200) -> float:
    """The temperature ``T`` minimizing the NLL of ``softmax(logits / T)`` (float64 L-BFGS on ``log T``),
    clipped to ``TEMPERATURE_RANGE``.

    Args:
        logits: ``N x K`` logits of the validation images (any log-probabilities that are exact up to a constant
            per image, such as float64 ``log_softmax`` of the logits, give the same T; clipped ones do not).
        y_true: ``N`` true class indices.
    """
    z = torch.from_numpy(_finite_logits(logits))
    y = torch.as_tensor(np.asarray(y_true, dtype=np.int64))
    if len(y) == 0:
        raise ValueError("expected validation images to fit a temperature on, got none")
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=max_iter, tolerance_grad=1e-10, tolerance_change=1e-12,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(np.clip(log_t.detach().exp().item(), *TEMPERATURE_RANGE))


def apply_temperature(logits, temperature: float) -> np.ndarray:
    """Probabilities ``softmax(logits / T)``, in float64."""
    if not temperature > 0:
        raise ConfigError(f"expected a temperature > 0, got {temperature}")
    return softmax(_finite_logits(logits) / temperature)


def softmax(logits) -> np.ndarray:
    """Row-wise softmax in float64 (stable: the row maximum is subtracted first)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _finite_logits(logits) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim != 2:
        raise ConfigError(f"expected logits N x K, got shape {z.shape}")
    if not np.isfinite(z).all():
        raise ConfigError("expected finite logits, got NaN or infinite values: the model's outputs are broken")
    return z
