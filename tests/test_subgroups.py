"""Subgroup audit against fairlearn's MetricFrame and equalized_odds_difference, and its flags, thresholds,
determinism, JSON and figure."""
import json
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pytest
from fairlearn.metrics import MetricFrame, equalized_odds_difference
from sklearn.metrics import precision_score, recall_score

from optik.core.errors import ConfigError
from optik.evaluation.binary import operating_point, threshold_for
from optik.evaluation.figures import subgroup_figure
from optik.evaluation.metrics import confusion_matrix, metrics_from_confusion
from optik.evaluation.subgroups import (MISSING, audit, group_names, group_seed, shared_threshold_note,
                                        subgroup_report, thresholds_by_group)

FAIRLEARN_METRICS = {  # zero_division=nan: a rate with an empty denominator is undefined, as in ours
    "sensitivity": partial(recall_score, zero_division=np.nan),
    "specificity": partial(recall_score, pos_label=0, zero_division=np.nan),
    "ppv": partial(precision_score, zero_division=np.nan),
}
OURS = {"sensitivity": "sensitivity", "specificity": "specificity", "ppv": "precision"}


def random_case(rng, k, sizes, *, no_positives_of=None):
    """Labels, predictions (right 70 % of the time) and group values with groups of unequal ``sizes``; the last
    group has no images of class ``no_positives_of`` when given."""
    values = np.repeat([f"g{i}" for i in range(len(sizes))], sizes)
    rng.shuffle(values)
    y_true = rng.integers(0, k, len(values))
    if no_positives_of is not None:
        last = values == f"g{len(sizes) - 1}"
        others = [c for c in range(k) if c != no_positives_of]
        y_true[last] = rng.choice(others, size=last.sum())
    y_pred = np.where(rng.random(len(values)) < 0.7, y_true, rng.integers(0, k, len(values)))
    return y_true, y_pred, values.tolist()


def binary_pair(true_pos: int, true_neg: int, *, sensitivity: float, specificity: float):
    """A group's labels and predictions with (rounded) exact rates, positives first."""
    tp, tn = round(true_pos * sensitivity), round(true_neg * specificity)
    y = np.r_[np.ones(true_pos, int), np.zeros(true_neg, int)]
    p = np.r_[np.ones(tp, int), np.zeros(true_pos - tp, int), np.zeros(tn, int), np.ones(true_neg - tn, int)]
    return y, p


def concat_groups(**groups):
    """``name=(y, p)`` -> y, p, values."""
    y = np.concatenate([g[0] for g in groups.values()])
    p = np.concatenate([g[1] for g in groups.values()])
    values = [name for name, g in groups.items() for _ in g[0]]
    return y, p, values


def check_against_fairlearn(report, y_true, y_pred, values, classes):
    """Every group's sensitivity, specificity and PPV, every gap and equalized-odds difference, per class."""
    for i, cls in enumerate(classes):
        yb, pb = (np.asarray(y_true) == i).astype(int), (np.asarray(y_pred) == i).astype(int)
        mf = MetricFrame(metrics=FAIRLEARN_METRICS, y_true=yb, y_pred=pb, sensitive_features=np.asarray(values))
        for name, col in mf.by_group.items():
            for group, ref in col.items():
                ours = report[group]["per_class"][cls][OURS[name]]
                if np.isnan(ref):
                    assert ours is None, (cls, group, name)
                else:
                    assert ours == pytest.approx(ref, abs=1e-9), (cls, group, name)
            gap = report["gaps"][cls][name]
            assert gap["difference"] == pytest.approx(col.max() - col.min(), abs=1e-9)  # pandas skips NaN
            assert report[gap["highest"]]["per_class"][cls][OURS[name]] == pytest.approx(col.max(), abs=1e-9)
            assert report[gap["lowest"]]["per_class"][cls][OURS[name]] == pytest.approx(col.min(), abs=1e-9)
        # FPR = 1 - specificity: its difference over groups equals the specificity's
        tpr, tnr = mf.by_group["sensitivity"], mf.by_group["specificity"]
        eod = max(tpr.max() - tpr.min(), tnr.max() - tnr.min())
        assert report["gaps"][cls]["equalized_odds_difference"] == pytest.approx(eod, abs=1e-9)
        if not (tpr.isna().any() or tnr.isna().any()):  # fairlearn's own function counts 0/0 as 0
            ref = equalized_odds_difference(yb, pb, sensitive_features=np.asarray(values))
            assert report["gaps"][cls]["equalized_odds_difference"] == pytest.approx(ref, abs=1e-9)


@pytest.mark.parametrize("k", [2, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_fairlearn_on_random_cases(k, seed):
    rng = np.random.default_rng(seed)
    classes = [f"c{i}" for i in range(k)]
    y_true, y_pred, values = random_case(rng, k, (400, 90, 31, 12))
    report = subgroup_report(y_true, y_pred, values, classes, n_boot=200, seed=seed)
    check_against_fairlearn(report, y_true, y_pred, values, classes)
    # each group's block has exactly the shape of optik's overall per-class report, plus its intervals
    mine = np.asarray(values) == "g1"
    ref = metrics_from_confusion(confusion_matrix(y_true[mine], y_pred[mine], k), classes)
    assert set(report["g1"]) == set(ref) | {"intervals"}
    assert report["g1"]["confusion_matrix"] == ref["confusion_matrix"] and report["g1"]["n"] == mine.sum()


@pytest.mark.parametrize("k", [2, 3])
@pytest.mark.parametrize("seed", [3, 4])
def test_group_without_positives_is_null_excluded_and_flagged(k, seed):
    rng = np.random.default_rng(seed)
    classes = [f"c{i}" for i in range(k)]
    target = k - 1  # binary: the positive class
    y_true, y_pred, values = random_case(rng, k, (300, 60, 25), no_positives_of=target)
    report = subgroup_report(y_true, y_pred, values, classes, n_boot=200, seed=seed)
    cls = classes[target]
    assert report["g2"]["per_class"][cls]["sensitivity"] is None
    assert report["gaps"][cls]["sensitivity"]["undefined_in"] == ["g2"]
    assert report["g2"]["intervals"]["per_class"][cls]["sensitivity"]["low"] is None
    assert any("'g2'" in f and "undefined" in f and "sensitivity" in f for f in report["flags"])
    check_against_fairlearn(report, y_true, y_pred, values, classes)  # the gap over the groups where it exists


def test_too_few_positives_are_flagged():
    y, p, values = concat_groups(big=binary_pair(80, 80, sensitivity=0.9, specificity=0.9),
                                 small=binary_pair(3, 50, sensitivity=2 / 3, specificity=0.9))
    report = subgroup_report(y, p, values, ["neg", "pos"], n_boot=200)
    assert report["gaps"]["pos"]["too_few_positives"] == ["small"]
    assert any("'small' has 3 positives" in f and "too few" in f for f in report["flags"])
    relaxed = subgroup_report(y, p, values, ["neg", "pos"], n_boot=200, min_positives=3)
    assert relaxed["gaps"]["pos"]["too_few_positives"] == []
    assert not any("too few" in f for f in relaxed["flags"])


def test_interval_excluding_another_estimate_is_flagged():
    y, p, values = concat_groups(a=binary_pair(200, 200, sensitivity=0.95, specificity=0.9),
                                 b=binary_pair(200, 200, sensitivity=0.60, specificity=0.9))
    gap = subgroup_report(y, p, values, ["neg", "pos"], n_boot=500)["gaps"]["pos"]["sensitivity"]
    assert gap["difference"] == pytest.approx(0.35) and (gap["highest"], gap["lowest"]) == ("a", "b")
    assert ["a", "b"] in gap["outside_interval"] and ["b", "a"] in gap["outside_interval"]
    assert "sensitivity of class 'pos'" in gap["flag"] and "95% interval" in gap["flag"]


def test_equal_groups_raise_no_interval_flag():
    same = binary_pair(150, 150, sensitivity=0.8, specificity=0.85)
    y, p, values = concat_groups(a=same, b=same)
    report = subgroup_report(y, p, values, ["neg", "pos"], n_boot=500)
    for name in ("sensitivity", "specificity", "ppv"):
        gap = report["gaps"]["pos"][name]
        assert gap["difference"] == 0.0 and gap["outside_interval"] == [] and gap["flag"] is None
    assert report["flags"] == []


def test_groups_with_too_few_in_the_denominator_take_no_part_in_the_interval_check():
    y, p, values = concat_groups(big=binary_pair(300, 300, sensitivity=0.95, specificity=0.9),
                                 tiny=binary_pair(4, 300, sensitivity=0.0, specificity=0.9))
    strict = subgroup_report(y, p, values, ["neg", "pos"], n_boot=500)["gaps"]["pos"]["sensitivity"]
    assert strict["difference"] == pytest.approx(0.95) and strict["flag"] is None
    loose = subgroup_report(y, p, values, ["neg", "pos"], n_boot=500, min_positives=1)["gaps"]["pos"]["sensitivity"]
    assert ["big", "tiny"] in loose["outside_interval"] and loose["flag"] is not None


def test_no_bootstrap_gives_no_intervals_and_no_interval_flags():
    y, p, values = concat_groups(a=binary_pair(200, 200, sensitivity=0.95, specificity=0.9),
                                 b=binary_pair(200, 200, sensitivity=0.60, specificity=0.9))
    report = subgroup_report(y, p, values, ["neg", "pos"], n_boot=0)
    assert report["a"]["intervals"] is None and report["gaps"]["pos"]["sensitivity"]["flag"] is None
    assert report["gaps"]["pos"]["sensitivity"]["difference"] == pytest.approx(0.35)


def test_missing_values_form_their_own_group():
    rng = np.random.default_rng(0)
    y_true, y_pred, values = random_case(rng, 2, (100, 100))
    values[:7] = ["", None, float("nan"), "", "", "", ""]
    report = subgroup_report(y_true, y_pred, values, ["neg", "pos"], n_boot=200)
    assert group_names(report) == ["g0", "g1", MISSING] and report[MISSING]["n"] == 7
    assert any(f.startswith("7 images have no value") and MISSING in f for f in report["flags"])
    with pytest.raises(ConfigError, match="spelled"):
        subgroup_report(y_true, y_pred, [MISSING, ""] + values[2:], ["neg", "pos"], n_boot=0)
    with pytest.raises(ConfigError, match="rename"):
        subgroup_report(y_true, y_pred, ["gaps"] * len(values), ["neg", "pos"], n_boot=0)
    with pytest.raises(ValueError, match="one column value per image"):
        subgroup_report(y_true, y_pred, values[:-1], ["neg", "pos"], n_boot=0)


def test_deterministic_with_the_seed_and_independent_of_other_groups():
    rng = np.random.default_rng(5)
    y_true, y_pred, values = random_case(rng, 3, (150, 80, 40))
    classes = ["a", "b", "c"]
    first = subgroup_report(y_true, y_pred, values, classes, n_boot=200, seed=7)
    assert json.dumps(first) == json.dumps(subgroup_report(y_true, y_pred, values, classes, n_boot=200, seed=7))
    other = subgroup_report(y_true, y_pred, values, classes, n_boot=200, seed=8)
    assert other["g0"]["intervals"] != first["g0"]["intervals"]
    assert first["g0"]["intervals"]["seed"] == group_seed(7, "g0") != group_seed(7, "g1")
    # a group's intervals depend on its own images and name, not on which other groups exist
    keep = np.asarray(values) != "g2"
    fewer = subgroup_report(y_true[keep], y_pred[keep], np.asarray(values)[keep].tolist(), classes, n_boot=200, seed=7)
    assert fewer["g0"]["intervals"] == first["g0"]["intervals"]


def test_thresholds_by_group_match_threshold_for_on_each_slice():
    rng = np.random.default_rng(2)
    n = 400
    values = rng.choice(["F", "M", "X"], n, p=[0.5, 0.45, 0.05]).tolist()
    positive = rng.random(n) < 0.3
    scores = np.clip(rng.normal(0.35 + 0.3 * positive, 0.15), 0, 1)
    x = np.asarray(values) == "X"
    positive[x] = False  # group X has negatives only: no threshold can be chosen for it
    for target in ({"sensitivity": 0.9}, {"specificity": 0.8}):
        out = thresholds_by_group(scores, positive, values, **{f"target_{k}": v for k, v in target.items()})
        assert out["target"] == target
        for g in ("F", "M"):
            m = np.asarray(values) == g
            t = threshold_for(scores[m], positive[m], **target)
            assert out["groups"][g] == {**operating_point(scores[m], positive[m], t), "n": int(m.sum()),
                                        "positives": int(positive[m].sum())}
        assert out["groups"]["X"]["threshold"] is None and "both classes" in out["groups"]["X"]["reason"]
    with pytest.raises(ConfigError, match="exactly one"):
        thresholds_by_group(scores, positive, values)
    with pytest.raises(ConfigError, match=r"in \(0, 1\]"):
        thresholds_by_group(scores, positive, values, target_sensitivity=1.5)


def test_audit_is_json_ready_and_says_how_predictions_were_made():
    rng = np.random.default_rng(1)
    y_true, y_pred, sex = random_case(rng, 2, (120, 100, 9))
    age = rng.choice(["18-39", "40-64", "65+", ""], len(sex)).tolist()
    scores = np.clip(0.5 * y_true + rng.random(len(sex)) * 0.6, 0, 1)
    note = shared_threshold_note(0.42, "val")
    out = audit(y_true, y_pred, {"sex": sex, "age_band": age}, ["neg", "pos"], threshold_note=note, n_boot=200,
                scores=scores, target_sensitivity=0.9)
    text = json.dumps(out, allow_nan=False)  # no NaN: undefined rates are null
    assert json.loads(text) == out
    assert out["note"] == note and "0.42 (val)" in note and out["columns"] == ["sex", "age_band"]
    assert out["positive"] == "pos" and set(out["thresholds_needed"]) == {"sex", "age_band"}
    assert {"g0", "g1", "g2", "gaps", "flags"} == set(out["sex"]) and MISSING in out["age_band"]
    with pytest.raises(ConfigError, match="threshold_note"):
        audit(y_true, y_pred, {"sex": sex}, ["neg", "pos"], threshold_note=None, n_boot=0)
    with pytest.raises(ConfigError, match="column names other than"):
        audit(y_true, y_pred, {"note": sex}, ["neg", "pos"], threshold_note=note, n_boot=0)
    multi = audit(y_true, y_pred, {"sex": sex}, ["a", "b", "c"], threshold_note=None, n_boot=0)
    assert multi["note"].startswith("multi-class") and "positive" not in multi


@pytest.mark.parametrize("k,shown,axes", [(2, None, 1), (8, None, 6), (8, ["c0", "c3"], 2), (3, None, 3)])
def test_subgroup_figure_draws_one_panel_per_class_shown(k, shown, axes):
    rng = np.random.default_rng(k)
    classes = [f"c{i}" for i in range(k)]
    y_true, y_pred, values = random_case(rng, k, (200, 60, 20), no_positives_of=k - 1)
    report = subgroup_report(y_true, y_pred, values, classes, n_boot=200)
    fig = subgroup_figure(report, classes, column="sex", classes_shown=shown)
    try:
        assert isinstance(fig, plt.Figure) and len(fig.axes) == axes
        fig.canvas.draw()
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="classes_shown"):
        subgroup_figure(report, classes, column="sex", classes_shown=["nope"])
