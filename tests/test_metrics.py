"""Metrics against scikit-learn and torchmetrics on randomized cases, including absent classes."""
import numpy as np
import pytest
import torch
import torchmetrics.functional.classification as tmf
from sklearn import metrics as skm

from optik.evaluation.metrics import classification_report, confusion_matrix, metrics_from_confusion, top_k_accuracy


def random_case(rng, k, n, absent=()):
    """Labels and predictions over k classes; classes in ``absent`` never occur as true labels."""
    present = [c for c in range(k) if c not in absent]
    y_true = rng.choice(present, size=n)
    # predictions: right 60 % of the time, else any class (absent ones included)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, size=n))
    return y_true, y_pred


CASES = [(2, 50, ()), (2, 7, ()), (3, 40, (2,)), (5, 200, ()), (10, 500, (3, 7)), (4, 9, (0, 1)), (6, 1000, (5,))]


@pytest.mark.parametrize("k,n,absent", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_against_sklearn(k, n, absent, seed):
    rng = np.random.default_rng(seed)
    y_true, y_pred = random_case(rng, k, n, absent)
    labels = list(range(k))
    classes = [f"c{i}" for i in labels]
    cm = confusion_matrix(y_true, y_pred, k)
    np.testing.assert_array_equal(cm, skm.confusion_matrix(y_true, y_pred, labels=labels))
    m = metrics_from_confusion(cm, classes)

    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred), abs=1e-12)
    with _quiet():
        bal = skm.balanced_accuracy_score(y_true, y_pred)
    assert m["balanced_accuracy"] == pytest.approx(bal, abs=1e-12)

    p, r, f, s = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    mcm = skm.multilabel_confusion_matrix(y_true, y_pred, labels=labels)  # [[tn, fp], [fn, tp]] per class
    for i, c in enumerate(classes):
        pc = m["per_class"][c]
        (tn, fp), (fn, tp) = mcm[i]
        assert (pc["tp"], pc["fp"], pc["tn"], pc["fn"], pc["support"]) == (tp, fp, tn, fn, s[i])
        assert pc["precision"] == pytest.approx(p[i], abs=1e-12)
        assert pc["sensitivity"] == pytest.approx(r[i], abs=1e-12)
        assert pc["f1"] == pytest.approx(f[i], abs=1e-12)
        spec = tn / (tn + fp) if tn + fp else 0.0
        npv = tn / (tn + fn) if tn + fn else 0.0
        assert pc["specificity"] == pytest.approx(spec, abs=1e-12)
        assert pc["npv"] == pytest.approx(npv, abs=1e-12)
        assert pc["fpr"] == pytest.approx((1 - spec) if tn + fp else 0.0, abs=1e-12)
        assert pc["type_i_errors"] == fp and pc["type_ii_errors"] == fn
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, labels=labels, average=avg,
                                                         zero_division=0)
        assert m[avg]["precision"] == pytest.approx(p, abs=1e-9)
        assert m[avg]["sensitivity"] == pytest.approx(r, abs=1e-9)
        assert m[avg]["f1"] == pytest.approx(f, abs=1e-9)


class _quiet:
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore")

    def __exit__(self, *a):
        self._w.__exit__(*a)


@pytest.mark.parametrize("k,n,absent", [c for c in CASES if c[0] > 2])
def test_against_torchmetrics_where_defined(k, n, absent):
    """Specificity and NPV have no scikit-learn function: compare with torchmetrics (classes that occur)."""
    rng = np.random.default_rng(7)
    y_true, y_pred = random_case(rng, k, n, absent)
    m = metrics_from_confusion(confusion_matrix(y_true, y_pred, k), [str(i) for i in range(k)])
    t, p = torch.from_numpy(y_true), torch.from_numpy(y_pred)
    spec = tmf.multiclass_specificity(p, t, num_classes=k, average="none").double().numpy()
    npv = tmf.multiclass_negative_predictive_value(p, t, num_classes=k, average="none").double().numpy()
    for i in range(k):
        assert m["per_class"][str(i)]["specificity"] == pytest.approx(spec[i], abs=1e-6)
        assert m["per_class"][str(i)]["npv"] == pytest.approx(npv[i], abs=1e-6)


def test_zero_division_is_zero_and_listed():
    # class 2 never occurs and is never predicted: its sensitivity, precision and F1 are 0/0
    y_true, y_pred = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    m = metrics_from_confusion(confusion_matrix(y_true, y_pred, 3), ["a", "b", "c"])
    assert m["per_class"]["c"]["sensitivity"] == 0.0 and m["per_class"]["c"]["specificity"] == 1.0
    assert {"per_class.c.sensitivity", "per_class.c.precision", "per_class.c.f1"} <= set(m["undefined"])
    assert "per_class.a.precision" not in m["undefined"]
    assert not any(np.isnan(v) for c in m["per_class"].values() for v in c.values())


@pytest.mark.parametrize("k", [3, 10])
def test_top_k_against_sklearn(k):
    rng = np.random.default_rng(k)
    y = rng.integers(0, k, 300)
    scores = rng.random((300, k))
    for j in range(1, k):
        assert top_k_accuracy(scores, y, j) == pytest.approx(
            skm.top_k_accuracy_score(y, scores, k=j, labels=list(range(k))), abs=1e-12)


def test_binary_positive_and_threshold():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 400)
    p_pos = np.clip(0.35 * y + rng.random(400) * 0.65, 0, 1)  # P(class "sick")
    probs = np.stack([1 - p_pos, p_pos], axis=1)
    for threshold in (0.2, 0.5, 0.8):
        rep = classification_report(probs, y, ["healthy", "sick"], positive="sick", threshold=threshold)
        y_hat = (p_pos >= threshold).astype(int)
        tn, fp, fn, tp = skm.confusion_matrix(y, y_hat, labels=[0, 1]).ravel()
        b = rep["binary"]
        assert (b["tp"], b["fp"], b["tn"], b["fn"]) == (tp, fp, tn, fn)
        assert b["sensitivity"] == pytest.approx(skm.recall_score(y, y_hat), abs=1e-12)
        assert b["specificity"] == pytest.approx(skm.recall_score(y, y_hat, pos_label=0), abs=1e-12)
        assert b["precision"] == pytest.approx(skm.precision_score(y, y_hat, zero_division=0), abs=1e-12)
        assert b["npv"] == pytest.approx(skm.precision_score(y, y_hat, pos_label=0, zero_division=0), abs=1e-12)
    # naming the other class positive swaps the roles
    rep = classification_report(probs, y, ["healthy", "sick"], positive="healthy", threshold=0.5)
    assert rep["binary"]["positive"] == "healthy"
    with pytest.raises(ValueError, match="--positive"):
        classification_report(probs, y, ["healthy", "sick"], positive="ill")
