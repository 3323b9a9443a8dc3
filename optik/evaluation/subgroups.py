"""Subgroup audit: optik's per-class report for every value of a patient column, and the gaps between groups.

A radiology team must show that a model's sensitivity and specificity hold for every patient subgroup (sex, age
band, scanner, site). For one column of per-image values this module computes, for each value, exactly the report
:func:`optik.evaluation.metrics.metrics_from_counts` makes for the whole split, with bootstrap intervals from
:func:`optik.evaluation.bootstrap.bootstrap_intervals`; then, per class, the largest difference between groups.

Conventions (checked against fairlearn's ``MetricFrame`` and ``equalized_odds_difference`` in the tests):
- Per class, one-vs-rest: a class's sensitivity in a group is its recall among that group's images.
- A rate whose denominator is empty in a group (no positives of a class: no sensitivity) is ``None`` in that
  group's block, not the 0.0 of the overall report: a subgroup with no positives says nothing about sensitivity,
  and a 0.0 would open a spurious gap. It is left out of the gap and said in ``flags``. The ``macro`` and
  ``weighted`` averages keep the overall report's convention (0.0 for an undefined rate).
- A gap is ``max - min`` over the groups where the rate is defined (fairlearn's ``between_groups`` difference,
  skipping NaN); with fewer than two such groups it is ``None``. The equalized-odds difference of a class is the
  larger of its sensitivity (TPR) gap and its false-positive-rate gap (= its specificity gap).
- Missing values (``""``, ``None``, NaN) form their own group, ``"(missing)"``, and the flags say how many.
- For a binary task every group is judged at the run's one threshold: ``y_pred`` is given, not chosen per group.
  :func:`thresholds_by_group` reports, separately, what threshold each group would need to reach a target rate.
"""
from __future__ import annotations

import hashlib
import math
from typing import Sequence

import numpy as np

from optik.core.errors import ConfigError
from optik.evaluation.binary import operating_point, threshold_for
from optik.evaluation.bootstrap import bootstrap_intervals, format_interval
from optik.evaluation.metrics import (MAX_MATRIX_CLASSES, confusion_matrix, counts_from_labels,
                                      metrics_from_confusion, metrics_from_counts, positive_index)

MISSING = "(missing)"
COLUMN_KEYS = ("gaps", "flags")  # keys of a column report that are not groups
AUDIT_KEYS = ("note", "columns", "positive", "thresholds_needed")  # keys of an audit that are not columns
GAP_METRICS = {"sensitivity": "sensitivity", "specificity": "specificity", "ppv": "precision"}  # gap -> report key
# metric -> the one-vs-rest counts its denominator sums (f1's is 2 tp + fp + fn, zero exactly when these are)
_DENOMINATOR = {"sensitivity": ("tp", "fn"), "specificity": ("tn", "fp"), "precision": ("tp", "fp"),
                "npv": ("tn", "fn"), "fpr": ("fp", "tn"), "fnr": ("fn", "tp"), "f1": ("tp", "fp", "fn")}
_NOUN = {"sensitivity": "images of class {}", "specificity": "images outside class {}",
         "precision": "images predicted as {}"}  # what a group lacks when the rate is undefined


def group_labels(values: Sequence, n: int) -> np.ndarray:
    """The group name (a string) of each of ``n`` images; ``""``, ``None`` and NaN become ``"(missing)"``."""
    if len(values) != n:
        raise ValueError(f"expected one column value per image ({n}), got {len(values)} values")
    names = np.array([MISSING if _is_missing(v) else str(v) for v in values], dtype=object)
    if n and MISSING in {str(v) for v in values if not _is_missing(v)}:
        raise ConfigError(f"expected no column value spelled {MISSING!r} (it names the images without a value), "
                          f"got it as a value; rename it in the column")
    return names


def _is_missing(v) -> bool:
    return v is None or (isinstance(v, str) and v == "") or (isinstance(v, float) and math.isnan(v))


def ordered_groups(names: np.ndarray) -> list[str]:
    """Distinct group names sorted as strings, ``"(missing)"`` last: an order independent of the images' order."""
    distinct = sorted(set(names.tolist()) - {MISSING})
    return distinct + [MISSING] * (MISSING in set(names.tolist()))


def group_names(column_report: dict) -> list[str]:
    """The groups of a :func:`subgroup_report` (every key but ``gaps`` and ``flags``), in report order."""
    return [k for k in column_report if k not in COLUMN_KEYS]


GROUP_TABLE = ("group", "class", "n", "positives", "sensitivity", "specificity", "PPV", "NPV")


def shown_classes(audit_report: dict, column: str) -> list[str]:
    """The classes a column's tables and figure show: the positive class of a binary task, else every class."""
    return [audit_report["positive"]] if "positive" in audit_report else list(audit_report[column]["gaps"])


def group_rows(audit_report: dict, column: str) -> list[tuple[str, ...]]:
    """Each group's rates for the classes shown, as text with their intervals (``n/a`` where undefined), in the
    columns of :data:`GROUP_TABLE`: the table the console and the report both draw."""
    report, rows = audit_report[column], []
    for g in group_names(report):
        ci = (report[g].get("intervals") or {}).get("per_class", {})
        for c in shown_classes(audit_report, column):
            m = report[g]["per_class"][c]
            rows.append((g, c, str(report[g]["n"]), str(m["support"]), *(
                "n/a" if m[k] is None else f"{m[k]:.3f} {format_interval(ci.get(c, {}).get(k))}".strip()
                for k in ("sensitivity", "specificity", "precision", "npv"))))
    return rows


def group_seed(seed: int, name: str) -> int:
    """A bootstrap seed for one group, from the audit's seed and the group's name (not its position), so adding
    a group or reordering the images leaves every other group's intervals unchanged."""
    digest = int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")
    return int(np.random.SeedSequence([seed, digest]).generate_state(1)[0])


def _check_labels(y_true, y_pred, k: int) -> tuple[np.ndarray, np.ndarray]:
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    if y_true.ndim != 1 or y_true.shape != y_pred.shape:
        raise ValueError(f"expected y_true and y_pred as two vectors of one length, got {y_true.shape} and "
                         f"{y_pred.shape}")
    if not y_true.size:
        raise ValueError("expected at least one image to audit, got none")
    lo, hi = min(y_true.min(), y_pred.min()), max(y_true.max(), y_pred.max())
    if lo < 0 or hi >= k:
        raise ValueError(f"expected labels in [0, {k}) for {k} classes, got values in [{lo}, {hi}]")
    return y_true, y_pred


def _report(y_true: np.ndarray, y_pred: np.ndarray, classes: Sequence[str]) -> dict:
    """The overall report's metrics for one group, built the way ``classification_report`` builds them."""
    k = len(classes)
    if k <= MAX_MATRIX_CLASSES:
        return metrics_from_confusion(confusion_matrix(y_true, y_pred, k), classes)
    return metrics_from_counts(counts_from_labels(y_true, y_pred, k), classes)


def _null_undefined(report: dict) -> dict:
    """Set each per-class rate whose denominator is empty in this group to None (see the module docstring)."""
    for row in report["per_class"].values():
        for metric, parts in _DENOMINATOR.items():
            if sum(row[p] for p in parts) == 0:
                row[metric] = None
    return report


def _group_block(y_true, y_pred, classes, *, n_boot: int, level: float, seed: int) -> dict:
    """One group's report plus its bootstrap intervals (None when ``n_boot`` is 0)."""
    block = _null_undefined(_report(y_true, y_pred, classes))
    block["intervals"] = (bootstrap_intervals(y_true, y_pred, classes, n_boot=n_boot, level=level, seed=seed)
                          if n_boot else None)
    return block


def _interval(block: dict, cls: str, metric: str) -> dict | None:
    """A group's interval of one class's rate, or None (no bootstrap, or per-class intervals skipped)."""
    ci = (block["intervals"] or {}).get("per_class", {}).get(cls, {}).get(metric)
    return ci if ci and ci["low"] is not None else None


def _outside(blocks: dict, cls: str, metric: str, tested: list[str]) -> list[tuple[str, str, float]]:
    """``(a, b, distance)`` for each pair where group b's estimate lies outside group a's interval."""
    pairs = []
    for a in tested:
        ci = _interval(blocks[a], cls, metric)
        for b in (b for b in tested if b != a and ci is not None):
            est = blocks[b]["per_class"][cls][metric]
            if est < ci["low"] or est > ci["high"]:
                pairs.append((a, b, max(ci["low"] - est, est - ci["high"])))
    return pairs


def _metric_gap(blocks: dict, cls: str, name: str, *, min_positives: int) -> dict:
    """The gap of one class's rate across groups, and whether an interval excludes another group's estimate.

    Only groups with at least ``min_positives`` images in the rate's denominator take part in the interval check:
    a rate from three positives would fall outside a large group's interval by chance alone. Even so the check is
    a screen, not a test at the interval's level: with no true difference it fired for sensitivity in about 12 %
    of simulations with two groups of 300 images and 55 % with groups of 1,000 and 100 (the small group's estimate
    is noisier than the large group's interval is wide)."""
    metric = GAP_METRICS[name]
    rates = {g: b["per_class"][cls][metric] for g, b in blocks.items()}
    defined = {g: r for g, r in rates.items() if r is not None}
    gap = {"difference": None, "highest": None, "lowest": None,
           "undefined_in": [g for g, r in rates.items() if r is None], "outside_interval": [], "flag": None}
    if len(defined) < 2:
        return gap
    hi, lo = max(defined, key=defined.get), min(defined, key=defined.get)
    gap.update(difference=defined[hi] - defined[lo], highest=hi, lowest=lo)
    row = {g: blocks[g]["per_class"][cls] for g in defined}
    tested = [g for g in defined if sum(row[g][p] for p in _DENOMINATOR[metric]) >= min_positives]
    pairs = _outside(blocks, cls, metric, tested)
    gap["outside_interval"] = [[a, b] for a, b, _ in pairs]
    if pairs:
        a, b, _ = max(pairs, key=lambda p: p[2])
        ci, level = _interval(blocks[a], cls, metric), blocks[a]["intervals"]["level"]
        more = f" (and {len(pairs) - 1} more pairs)" if len(pairs) > 1 else ""
        gap["flag"] = (f"{name} of class {cls!r}: the estimate for {b!r}, {defined[b]:.3f}, lies outside the "
                       f"{level:.0%} interval for {a!r}, [{ci['low']:.3f}, {ci['high']:.3f}]{more}")
    return gap


def _class_gaps(blocks: dict, cls: str, *, min_positives: int) -> dict:
    """Sensitivity, specificity and PPV gaps of one class, its equalized-odds difference, and the groups with
    too few positives of it."""
    gaps = {name: _metric_gap(blocks, cls, name, min_positives=min_positives) for name in GAP_METRICS}
    # FPR = 1 - specificity, so the FPR gap equals the specificity gap
    parts = [gaps[m]["difference"] for m in ("sensitivity", "specificity") if gaps[m]["difference"] is not None]
    gaps["equalized_odds_difference"] = max(parts) if parts else None
    gaps["too_few_positives"] = [g for g, b in blocks.items() if b["per_class"][cls]["support"] < min_positives]
    return gaps


def _column_flags(blocks: dict, gaps: dict, flagged: Sequence[str], *, n_missing: int,
                  min_positives: int) -> list[str]:
    """Sentences for the report about the classes ``flagged``: missing values, undefined rates, too few
    positives, an interval excluding another group's estimate."""
    flags = [f"{n_missing} images have no value in this column: they form the group {MISSING!r}"] if n_missing else []
    if len(blocks) < 2:
        flags.append(f"only one group ({next(iter(blocks))!r}): there is no gap to measure")
    for cls, g in ((c, gaps[c]) for c in flagged):
        for name, metric in GAP_METRICS.items():
            lacks = _NOUN[metric].format(repr(cls))
            flags += [f"{grp!r} has no {lacks}: its {name} for that class is undefined (null) and left out of the "
                      f"gap" for grp in g[name]["undefined_in"]]
        flags += [f"{grp!r} has {blocks[grp]['per_class'][cls]['support']} positives of class {cls!r}, fewer than "
                  f"{min_positives}: too few to say anything about its sensitivity" for grp in g["too_few_positives"]
                  if blocks[grp]["per_class"][cls]["support"]]  # none at all: said above, as undefined
        flags += [g[name]["flag"] for name in GAP_METRICS if g[name]["flag"]]
    return flags


def subgroup_report(y_true, y_pred, values: Sequence[str], classes: Sequence[str], *, n_boot: int = 2000,
                    level: float = 0.95, seed: int = 0, min_positives: int = 10,
                    positive: str | None = None) -> dict:
    """Per-class metrics with intervals for every value of one column, and the gaps between those groups.

    Args:
        y_true, y_pred: ``N`` class indices in ``[0, K)``; for a binary task ``y_pred`` at the run's threshold,
            the same for every group.
        values: ``N`` column values (strings; others are turned into strings). ``""``, None and NaN form the
            group ``"(missing)"``.
        classes: the ``K`` class names, index = label.
        n_boot, level, seed: the bootstrap of each group (``n_boot=0``: no intervals, no interval flags). Each
            group is resampled with its own seed, derived from ``seed`` and its name (:func:`group_seed`).
        min_positives: a group with fewer positives of a class is flagged as too few to say anything; a group
            with fewer images in a rate's denominator takes no part in that rate's interval check.
        positive: binary tasks: the positive class (default the second). Gaps are computed for both classes,
            but ``flags`` speak of the positive class only: the negative class's sensitivity and specificity are
            the positive class's specificity and sensitivity, and saying everything twice hides what matters.

    Returns:
        ``{"<value>": {<the per-class report of metrics_from_counts, undefined rates None>, "intervals":
        <bootstrap_intervals output or None>}, ..., "gaps": {"<class>": {"sensitivity" | "specificity" | "ppv":
        {"difference", "highest", "lowest", "undefined_in", "outside_interval": [[interval_of, estimate_of]],
        "flag"}, "equalized_odds_difference", "too_few_positives": [groups]}}, "flags": [sentences]}``.
        Groups are in string order, ``"(missing)"`` last. JSON-ready.
    """
    y_true, y_pred = _check_labels(y_true, y_pred, len(classes))
    names = group_labels(values, len(y_true))
    clash = [g for g in ordered_groups(names) if g in COLUMN_KEYS]
    if clash:
        raise ConfigError(f"expected column values other than {list(COLUMN_KEYS)} (they name the report's own "
                          f"entries), got {clash}; rename them in the column")
    blocks = {}
    for g in ordered_groups(names):
        m = names == g
        blocks[g] = _group_block(y_true[m], y_pred[m], classes, n_boot=n_boot, level=level,
                                 seed=group_seed(seed, g))
    gaps = {c: _class_gaps(blocks, c, min_positives=min_positives) for c in classes}
    flagged = [classes[positive_index(classes, positive)]] if len(classes) == 2 else list(classes)
    flags = _column_flags(blocks, gaps, flagged, n_missing=int((names == MISSING).sum()),
                          min_positives=min_positives)
    return {**blocks, "gaps": gaps, "flags": flags}


def shared_threshold_note(threshold: float, source: str) -> str:
    """The sentence a binary audit carries: every group was judged at the run's one threshold."""
    return (f"binary: every group at the run's threshold {threshold:.3g} ({source}), the same for all groups; "
            f"no group's threshold was tuned")


def audit(y_true, y_pred, columns: dict[str, Sequence[str]], classes: Sequence[str], *, threshold_note: str | None,
          n_boot: int = 2000, level: float = 0.95, seed: int = 0, min_positives: int = 10,
          positive: str | None = None, scores=None, target_sensitivity: float | None = None,
          target_specificity: float | None = None) -> dict:
    """:func:`subgroup_report` for each column, with the note of how predictions were made.

    Args:
        y_true, y_pred, classes, n_boot, level, min_positives: as in :func:`subgroup_report`.
        columns: column name -> ``N`` values, e.g. ``{"sex": [...], "age_band": [...]}``.
        threshold_note: binary tasks (required): the shared threshold, e.g. ``shared_threshold_note(0.42, "val")``.
            Multi-class: optional (default: predictions are each image's most probable class).
        seed: each column gets a seed derived from it and the column's name.
        positive: binary tasks: the positive class (default the second), recorded for the figure and used by the
            thresholds below.
        scores, target_sensitivity / target_specificity: binary tasks, optional: the positive class's ``N``
            probabilities and one target rate; adds what threshold each group would need (:func:`thresholds_by_group`).

    Returns:
        ``{"note": str, "columns": [names], "positive": class (binary only), "<column>": <subgroup_report>, ...,
        "thresholds_needed": {"<column>": <thresholds_by_group>} (only with a target)}``.
    """
    note = _audit_note(classes, threshold_note, columns, scores, target_sensitivity, target_specificity)
    out: dict = {"note": note, "columns": list(columns)}
    if len(classes) == 2:
        out["positive"] = classes[positive_index(classes, positive)]
    for name, values in columns.items():
        out[name] = subgroup_report(y_true, y_pred, values, classes, n_boot=n_boot, level=level,
                                    seed=group_seed(seed, name), min_positives=min_positives,
                                    positive=out.get("positive"))
    if target_sensitivity is not None or target_specificity is not None:
        is_pos = np.asarray(y_true) == positive_index(classes, positive)
        out["thresholds_needed"] = {name: thresholds_by_group(scores, is_pos, values,
                                                              target_sensitivity=target_sensitivity,
                                                              target_specificity=target_specificity)
                                    for name, values in columns.items()}
    return out


def _audit_note(classes, threshold_note, columns, scores, target_sensitivity, target_specificity) -> str:
    """Check the audit's options and return its note."""
    if not columns:
        raise ConfigError("expected at least one column to audit (e.g. --by sex,age_band), got none")
    clash = [c for c in columns if c in AUDIT_KEYS]
    if clash:
        raise ConfigError(f"expected column names other than {list(AUDIT_KEYS)} (they name the audit's own "
                          f"entries), got {clash}; rename the columns")
    targeted = target_sensitivity is not None or target_specificity is not None
    if len(classes) != 2:
        if targeted or scores is not None:
            raise ConfigError(f"per-group thresholds apply to binary tasks; this one has {len(classes)} classes")
        return threshold_note or "multi-class: every image's prediction is its most probable class, in every group"
    if not threshold_note:
        raise ConfigError("expected threshold_note for a binary task (the report must say every group shares the "
                          "run's threshold), got none; pass shared_threshold_note(threshold, source)")
    if targeted and scores is None:
        raise ConfigError("expected the positive class's scores with a target sensitivity/specificity, got none")
    return threshold_note


def _target(target_sensitivity: float | None, target_specificity: float | None) -> dict:
    """``{"sensitivity": x}`` or ``{"specificity": x}``, checked the way ``threshold_for`` checks it."""
    if (target_sensitivity is None) == (target_specificity is None):
        raise ConfigError(f"expected exactly one of target_sensitivity or target_specificity, got "
                          f"{target_sensitivity} and {target_specificity}")
    name = "sensitivity" if target_sensitivity is not None else "specificity"
    value = target_sensitivity if target_sensitivity is not None else target_specificity
    if not 0.0 < value <= 1.0:
        raise ConfigError(f"expected a target {name} in (0, 1], got {value}")
    return {name: value}


def _needed(scores: np.ndarray, positive: np.ndarray, target: dict) -> dict:
    """The threshold one group needs for the target and the rates at it, or None with the reason."""
    n, p = len(positive), int(positive.sum())
    if p == 0 or p == n:
        return {"threshold": None, "n": n, "positives": p,
                "reason": f"needs both classes to choose a threshold; this group has {p} positive and {n - p} "
                          f"negative images"}
    t = threshold_for(scores, positive, **target)
    return {**operating_point(scores, positive, t), "n": n, "positives": p}


def thresholds_by_group(scores, positive, values: Sequence[str], *, target_sensitivity: float | None = None,
                        target_specificity: float | None = None) -> dict:
    """What threshold each group would need to reach a target rate on its own images (binary tasks).

    This is a diagnosis, not a recommendation: the audit judges every group at the run's one threshold, and a
    per-group threshold chosen on the evaluated images is optimistic for that group.

    Args:
        scores: ``N`` positive-class probabilities.
        positive: ``N`` booleans, True where the image truly is positive.
        values: ``N`` column values, as in :func:`subgroup_report`.
        target_sensitivity / target_specificity: exactly one, in ``(0, 1]`` (see
            :func:`optik.evaluation.binary.threshold_for`).

    Returns:
        ``{"target": {"sensitivity": x}, "groups": {"<value>": {"threshold", "tp", "fp", "tn", "fn",
        "sensitivity", "specificity", "precision", "npv", "accuracy", "n", "positives"}}}``; a group without
        both classes has ``"threshold": None`` and a ``"reason"``.
    """
    target = _target(target_sensitivity, target_specificity)
    scores, positive = np.asarray(scores, dtype=np.float64), np.asarray(positive).astype(bool)
    if scores.ndim != 1 or scores.shape != positive.shape:
        raise ValueError(f"expected scores and labels as two vectors of one length, got {scores.shape} and "
                         f"{positive.shape}")
    names = group_labels(values, len(scores))
    groups = {g: _needed(scores[names == g], positive[names == g], target) for g in ordered_groups(names)}
    return {"target": target, "groups": groups}


def file_safe(name: str) -> str:
    """A column name as part of a file name: letters, digits, ``-`` and ``_`` kept, anything else ``_``."""
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def figure_name(column: str) -> str:
    """The file name of a column's figure in a run's ``figures/``: ``subgroups_<column>.png``."""
    return f"subgroups_{file_safe(column)}.png"
