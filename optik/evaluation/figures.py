"""Figures of an evaluation: the confusion matrix as a heatmap (counts and row-normalized)."""
from __future__ import annotations

from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from optik.core.figures import save_figure  # noqa: E402,F401  (re-exported: most callers import it from here)


def confusion_figure(cm: np.ndarray, classes: Sequence[str], *, title: str = "Confusion matrix"):
    """A figure with the counts (left) and the row-normalized rates (right); rows are true classes."""
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros(cm.shape, dtype=float), where=rows > 0)
    k = len(classes)
    size = min(max(4.0, 0.45 * k + 2), 24.0)  # beyond ~50 classes the cells shrink instead of the page growing
    # a fixed layout: constrained_layout measured ~0.5 s a figure, paid after every training run
    fig, axes = plt.subplots(1, 2, figsize=(2 * size + 1, size))
    fig.subplots_adjust(left=0.09, right=0.97, bottom=0.16, top=0.9, wspace=0.35)
    for ax, data, label, fmt in ((axes[0], cm, "count", "d"), (axes[1], norm, "share of true class", ".2f")):
        im = ax.imshow(data, cmap="Blues", vmin=0, vmax=data.max() if data.max() > 0 else 1)
        tilt = max(map(len, classes)) > 3 and k > 4  # long names would overlap
        if k <= 50:
            ax.set_xticks(range(k), classes, rotation=45 if tilt else 0, ha="right" if tilt else "center")
            ax.set_yticks(range(k), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        fig.colorbar(im, ax=ax, shrink=0.8, label=label)
        if k <= 20:
            limit = data.max() / 2 if data.max() > 0 else 0.5
            for i in range(k):
                for j in range(k):
                    ax.text(j, i, format(data[i, j], fmt), ha="center", va="center", fontsize=8,
                            color="white" if data[i, j] > limit else "black")
    axes[0].set_title(f"{title} (counts)")
    axes[1].set_title(f"{title} (normalized by row)")
    return fig


def confusion_image(cm, *, cell: int = 16) -> np.ndarray:
    """The row-normalized confusion matrix as an ``H x W x 3`` uint8 heatmap (rows = true class), no text."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    rgb = (matplotlib.colormaps["Blues"](norm)[..., :3] * 255).astype(np.uint8)
    cell = max(1, min(cell, 1024 // max(len(cm), 1)))  # at most about 1024 pixels a side
    return np.repeat(np.repeat(rgb, cell, axis=0), cell, axis=1)


def roc_pr_figure(roc: dict, pr: dict, *, positive: str, points: Sequence[dict] = ()):
    """ROC (left) and precision-recall (right) curves, with operating points marked.

    Args:
        roc, pr: from :func:`optik.evaluation.binary.roc_curve` and
            :func:`~optik.evaluation.binary.precision_recall_curve`.
        positive: name of the positive class (for the titles).
        points: operating points (``threshold``, ``sensitivity``, ``specificity``, ``precision``; optional ``label``).
    """
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.6), constrained_layout=True)
    a.plot(roc["fpr"], roc["tpr"], lw=2, label=f"ROC, AUC {roc['auc']:.3f}")
    a.plot([0, 1], [0, 1], ls=":", c="grey", label="chance")
    a.set(xlabel="1 - specificity (false positive rate)", ylabel="sensitivity (true positive rate)",
          title=f"ROC, positive = {positive!r}", xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    b.step(np.r_[0.0, pr["recall"]], np.r_[pr["precision"][0], pr["precision"]], where="pre", lw=2,
           label=f"average precision {pr['average_precision']:.3f}")
    base = pr["recall"][-1] and pr["precision"][-1]  # precision when every image is called positive = prevalence
    b.axhline(base, ls=":", c="grey", label=f"prevalence {base:.2f}")
    b.set(xlabel="sensitivity (recall)", ylabel="precision (PPV)", title="precision-recall",
          xlim=(-0.01, 1.01), ylim=(-0.01, 1.01))
    for p, marker in zip(points, "oDs^v"):
        label = p.get("label", f"threshold {p['threshold']:.3g}")
        a.plot(1 - p["specificity"], p["sensitivity"], marker, ms=8, label=label)
        b.plot(p["sensitivity"], p["precision"], marker, ms=8, label=label)
    a.legend(loc="lower right", fontsize=8)
    b.legend(loc="lower left", fontsize=8)
    return fig


def reliability_figure(bins: dict, *, title: str = "Reliability", after: dict | None = None):
    """Accuracy against confidence per bin (bars) with the diagonal of perfect calibration, and the share of
    images per bin below. ``after``: the bins after temperature scaling, drawn as a line."""
    edges = np.asarray(bins["edges"])
    width, centers = np.diff(edges), (edges[:-1] + edges[1:]) / 2
    fig, (a, h) = plt.subplots(2, 1, figsize=(5.2, 6), height_ratios=(3, 1), sharex=True)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.09, top=0.94, hspace=0.08)
    acc = np.array([np.nan if v is None else v for v in bins["accuracy"]])
    conf = np.array([np.nan if v is None else v for v in bins["confidence"]])
    a.bar(centers, np.nan_to_num(acc), width=width, edgecolor="k", alpha=0.75, label="accuracy")
    a.bar(centers, np.nan_to_num(conf - acc), bottom=np.nan_to_num(acc), width=width, fill=False, hatch="//",
          edgecolor="tab:red", label="gap to mean confidence")
    a.plot([0, 1], [0, 1], ls=":", c="grey")
    if after is not None:
        acc2 = [np.nan if v is None else v for v in after["accuracy"]]
        conf2 = [np.nan if v is None else v for v in after["confidence"]]
        a.plot(conf2, acc2, "o-", c="tab:green", label=f"temperature-scaled, ECE {after['ece']:.3f}")
    a.set(ylabel="accuracy", ylim=(0, 1), title=f"{title}: ECE {bins['ece']:.3f}, MCE {bins['mce']:.3f}")
    a.legend(loc="lower right", fontsize=8)
    count = np.asarray(bins["count"])
    h.bar(centers, count / max(count.sum(), 1), width=width, edgecolor="k", color="tab:grey")
    h.set(xlabel="confidence (top-1 probability)", ylabel="share", xlim=(0, 1))
    return fig


SUBGROUP_MAX_CLASSES = 6  # panels in a subgroup figure: beyond this the page is a wall of dots


def _subgroup_classes(column_report: dict, classes: Sequence[str], shown) -> tuple[list[str], str]:
    """The classes to draw and a note saying which: those asked for, the positive class (binary: the second
    class), or the classes with the largest equalized-odds difference."""
    if shown is not None:
        unknown = [c for c in shown if c not in classes]
        if unknown or not shown:
            raise ValueError(f"expected classes_shown among the classes {list(classes)}, got {list(shown)}")
        return list(shown), ""
    if len(classes) == 2:
        return [classes[1]], f"positive class {classes[1]!r}"
    eod = {c: column_report["gaps"][c]["equalized_odds_difference"] for c in classes}
    top = sorted(classes, key=lambda c: -1.0 if eod[c] is None else -eod[c])[:SUBGROUP_MAX_CLASSES]
    if len(top) == len(classes):
        return top, ""
    return top, f"{len(top)} of {len(classes)} classes, largest equalized-odds difference"


def _subgroup_panel(ax, column_report: dict, groups: Sequence[str], cls: str) -> None:
    """One class: each group's sensitivity and specificity as points, their intervals as vertical bars."""
    x = np.arange(len(groups))
    for shift, metric, color in ((-0.12, "sensitivity", "tab:blue"), (0.12, "specificity", "tab:orange")):
        for i, g in enumerate(groups):
            block = column_report[g]
            est = block["per_class"][cls][metric]
            ci = ((block["intervals"] or {}).get("per_class", {}).get(cls, {}).get(metric) or {})
            if ci.get("low") is not None:  # bars drawn low-to-high: a percentile interval need not hold the point
                ax.vlines(x[i] + shift, ci["low"], ci["high"], color=color, lw=2, alpha=0.6)
            if est is None:
                ax.text(x[i] + shift, 0.02, "n/a", color=color, ha="center", fontsize=7, rotation=90)
            else:
                ax.plot(x[i] + shift, est, "o", color=color, ms=6, label=metric if i == 0 else None)
    ticks = [f"{g}\nn={column_report[g]['n']}, pos={column_report[g]['per_class'][cls]['support']}" for g in groups]
    ax.set_xticks(x, ticks, fontsize=7)
    ax.set(ylim=(-0.02, 1.05), xlim=(-0.6, len(groups) - 0.4), title=f"class {cls!r}", ylabel="rate")
    ax.grid(axis="y", alpha=0.3)


def subgroup_figure(column_report: dict, classes: Sequence[str], *, column: str,
                    classes_shown: Sequence[str] | None = None):
    """Each group's sensitivity and specificity with their bootstrap intervals, one panel per class.

    Args:
        column_report: one column of an audit, from :func:`optik.evaluation.subgroups.subgroup_report`.
        classes: the class names.
        column: the column's name (for the title).
        classes_shown: the classes to draw. Default: binary, the second class (pass the run's positive class);
            many classes, up to six, those with the largest equalized-odds difference (the title says which).

    A rate undefined in a group (no positives: no sensitivity) is marked ``n/a``. Returns a Figure with one axes
    per class shown; save it with :func:`save_figure`.
    """
    from optik.evaluation.subgroups import group_names  # here: subgroups is optional to the other figures

    shown, note = _subgroup_classes(column_report, classes, classes_shown)
    groups = group_names(column_report)
    cols = min(3, len(shown))
    rows = -(-len(shown) // cols)
    width, height = max(6.0 / cols, 0.9 * len(groups) + 1.5) * cols, 3.8 * rows + 0.9  # inches
    # a fixed layout, margins in inches: constrained_layout costs ~0.5 s a figure
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=0.7 / width, right=1 - 0.15 / width, bottom=0.55 / height, top=1 - 0.95 / height,
                        wspace=0.25, hspace=0.55)
    for ax in axes.flat[len(shown):]:
        fig.delaxes(ax)
    for ax, cls in zip(axes.flat, shown):
        _subgroup_panel(ax, column_report, groups, cls)
    axes.flat[0].legend(loc="lower left", fontsize=8)
    level = next((column_report[g]["intervals"]["level"] for g in groups if column_report[g]["intervals"]), None)
    bars = f"bars: {level:.0%} bootstrap intervals" if level else "no intervals (bootstrap off)"
    fig.suptitle(f"{column}: sensitivity and specificity per group\n{bars}" + (f"; {note}" if note else ""),
                 fontsize=10)
    return fig


def confident_mistakes(probs, y_true, *, n: int = 16) -> np.ndarray:
    """Indices of the misclassified images, most confident (in the wrong class) first, at most ``n``."""
    probs, y_true = np.asarray(probs), np.asarray(y_true)
    wrong = np.flatnonzero(probs.argmax(axis=1) != y_true)
    return wrong[np.argsort(-probs[wrong].max(axis=1), kind="stable")][:n]


def mistakes_figure(images, probs, y_true, classes: Sequence[str], *, n: int = 16, columns: int = 8):
    """A grid of the most confident mistakes: each image titled ``true -> predicted (probability)``.

    ``images``: ``N x C x H x W`` uint8 (or float in [0, 1]) aligned with ``probs`` and ``y_true``, or a function
    of the indices of the images to show that returns them (a streamed split decodes only those). Returns None when
    there are no mistakes.
    """
    idx = confident_mistakes(probs, y_true, n=n)
    if not idx.size:
        return None
    # one mosaic in one axes: a subplot per image cost ~0.5 s a figure, paid after every training run
    shown = images(torch.as_tensor(idx)) if callable(images) else np.asarray(images)[idx]
    imgs = np.asarray(shown.cpu() if isinstance(shown, torch.Tensor) else shown).astype(np.float64)
    imgs = imgs / 255.0 if imgs.max() > 1 else imgs
    n, c, h, w = imgs.shape
    cols, rows, pad, title = min(columns, n), -(-n // columns), max(2, h // 8), max(10, h // 2)
    mosaic = np.ones((rows * (h + pad + title), cols * (w + pad), 3))
    for k, i in enumerate(idx):
        r, q = divmod(k, cols)
        y0, x0 = r * (h + pad + title) + title, q * (w + pad)
        mosaic[y0:y0 + h, x0:x0 + w] = (imgs[k].transpose(1, 2, 0) if c == 3 else imgs[k][0][..., None])
    scale = 1.5 / max(h, 28)  # inches per pixel row: small images drawn at a readable size
    width = max(4.0, mosaic.shape[1] * scale * 1.1)
    height = width * 0.98 * mosaic.shape[0] / mosaic.shape[1] + 0.45  # the mosaic's aspect, plus the title
    fig, ax = plt.subplots(figsize=(width, height))
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.4 / height)
    ax.imshow(mosaic, interpolation="nearest")
    ax.axis("off")
    for k, i in enumerate(idx):
        r, q = divmod(k, cols)
        pred = int(np.argmax(probs[i]))
        ax.text(q * (w + pad) + w / 2, r * (h + pad + title) + title - 1,
                f"{classes[y_true[i]]} -> {classes[pred]}\n{probs[i][pred]:.3f}", ha="center", va="bottom",
                fontsize=7)
    fig.suptitle("Most confident mistakes: true -> predicted (probability)", fontsize=10)
    return fig
