"""ROC / PR curves, operating points, bootstrap intervals, calibration and temperature scaling, against
scikit-learn, SciPy and torchmetrics; then `optik evaluate` with those options on a real binary run."""
import json

import numpy as np
import pytest
import scipy.optimize
import scipy.special
import scipy.stats
import torch
from sklearn import metrics as skm
from torchmetrics.functional.classification import multiclass_calibration_error

import optik
from optik.core.errors import ConfigError
from optik.evaluation.binary import operating_point, precision_recall_curve, roc_curve, threshold_for
from optik.evaluation.bootstrap import bootstrap_intervals, resampled_counts
from optik.evaluation.calibration import apply_temperature, calibration_bins, fit_temperature
from optik.evaluation.figures import confident_mistakes
from tests.helpers import run_optik


def binary_case(seed, n=300, ties=False):
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < 0.3
    scores = 1 / (1 + np.exp(-(rng.normal(size=n) + 1.5 * positive)))
    return (np.round(scores, 1) if ties else scores), positive


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def overconfident(seed, n=2000, k=5, temperature=2.5, scale=1.5):
    """Labels drawn from softmax(z); the model's logits are ``z * temperature``: overconfident by ``temperature``.
    Returns the model's logits and the labels."""
    rng = np.random.default_rng(seed)
    z = rng.normal(scale=scale, size=(n, k))
    y = np.array([rng.choice(k, p=p) for p in softmax(z)])
    return z * temperature, y


def reference_temperature(logits, y):
    """An independent fit: SciPy's bounded scalar search on the NLL of softmax(logits / T), from SciPy's
    log-softmax."""
    nll = lambda t: -scipy.special.log_softmax(logits / t, axis=1)[np.arange(len(y)), y].mean()  # noqa: E731
    return scipy.optimize.minimize_scalar(nll, bounds=(0.05, 20), method="bounded", options={"xatol": 1e-10}).x


# ------------------------------------------------------------------------------------------------ curves
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_roc_and_pr_curves_match_sklearn(seed, ties):
    scores, positive = binary_case(seed, ties=ties)
    roc = roc_curve(scores, positive)
    fpr, tpr, thr = skm.roc_curve(positive, scores, drop_intermediate=False)
    np.testing.assert_allclose(roc["fpr"], fpr, atol=1e-12)
    np.testing.assert_allclose(roc["tpr"], tpr, atol=1e-12)
    np.testing.assert_allclose(roc["thresholds"][1:], thr[1:])
    assert roc["auc"] == pytest.approx(skm.roc_auc_score(positive, scores), abs=1e-12)

    pr = precision_recall_curve(scores, positive)
    precision, recall, thr = skm.precision_recall_curve(positive, scores)
    # scikit-learn: ascending thresholds, plus a final (precision 1, recall 0) point without a threshold
    np.testing.assert_allclose(pr["precision"], precision[:-1][::-1], atol=1e-12)
    np.testing.assert_allclose(pr["recall"], recall[:-1][::-1], atol=1e-12)
    np.testing.assert_allclose(pr["thresholds"], thr[::-1])
    assert pr["average_precision"] == pytest.approx(skm.average_precision_score(positive, scores), abs=1e-12)


def test_operating_point_matches_sklearn():
    scores, positive = binary_case(3)
    p = operating_point(scores, positive, 0.4)
    tn, fp, fn, tp = skm.confusion_matrix(positive, scores >= 0.4).ravel()
    assert (p["tp"], p["fp"], p["tn"], p["fn"]) == (tp, fp, tn, fn)
    assert p["sensitivity"] == pytest.approx(skm.recall_score(positive, scores >= 0.4))
    assert p["precision"] == pytest.approx(skm.precision_score(positive, scores >= 0.4))


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("target", [0.5, 0.8, 0.95, 1.0])
def test_threshold_for_a_target_is_the_best_one_that_reaches_it(target, ties):
    scores, positive = binary_case(4, ties=ties)
    candidates = np.unique(scores)  # brute force over every distinct threshold
    rates = [operating_point(scores, positive, t) for t in candidates]

    t = threshold_for(scores, positive, sensitivity=target)
    got = operating_point(scores, positive, t)
    ok = [r for r in rates if r["sensitivity"] >= target]
    assert got["sensitivity"] >= target
    assert got["specificity"] == max(r["specificity"] for r in ok)
    assert got["tp"] + got["fp"] == min(r["tp"] + r["fp"] for r in ok)  # the fewest called positive

    t = threshold_for(scores, positive, specificity=target)
    got = operating_point(scores, positive, t)
    ok = [r for r in rates if r["specificity"] >= target]
    assert got["specificity"] >= target
    if ok:
        assert got["sensitivity"] == max(r["sensitivity"] for r in ok)


def test_threshold_sits_midway_in_the_gap_and_targets_are_checked():
    scores, positive = np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, True, False, False])
    assert threshold_for(scores, positive, sensitivity=1.0) == pytest.approx(0.55)
    assert threshold_for(scores, positive, specificity=1.0) == pytest.approx(0.55)
    for bad in ({"sensitivity": 0.0}, {"specificity": 1.5}, {}, {"sensitivity": 0.9, "specificity": 0.9}):
        with pytest.raises(ConfigError, match="expected"):
            threshold_for(scores, positive, **bad)


# ------------------------------------------------------------------------------------------------ bootstrap
def test_resampled_counts_are_resamples():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 3, 100), rng.integers(0, 3, 100)
    counts = resampled_counts(y, p, 3, n_boot=50, seed=1)
    assert counts["true"].shape == (50, 3) and (counts["true"].sum(1) == 100).all() and (counts["pred"].sum(1) == 100).all()
    np.testing.assert_array_equal(counts["tp"], resampled_counts(y, p, 3, n_boot=50, seed=1)["tp"])
    assert not np.array_equal(counts["tp"], resampled_counts(y, p, 3, n_boot=50, seed=2)["tp"])
    # every resample, drawn independently with the same generator, against scikit-learn's confusion matrix
    idx = np.random.default_rng(1).integers(0, 100, size=(50, 100))
    for b in (0, 17, 49):
        cm = skm.confusion_matrix(y[idx[b]], p[idx[b]], labels=[0, 1, 2])
        np.testing.assert_array_equal(counts["tp"][b], np.diag(cm))
        np.testing.assert_array_equal(counts["true"][b], cm.sum(1))
        np.testing.assert_array_equal(counts["pred"][b], cm.sum(0))


def test_bootstrap_intervals_agree_with_scipy():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 400)
    p = np.where(rng.random(400) < 0.85, y, 1 - y)
    ci = bootstrap_intervals(y, p, ["neg", "pos"], n_boot=4000, seed=0)
    ref = scipy.stats.bootstrap(((y == p).astype(float),), np.mean, n_resamples=4000, method="percentile",
                                rng=np.random.default_rng(1)).confidence_interval
    # two independent Monte Carlo estimates of the same percentiles: within a few resampling errors
    assert ci["accuracy"]["low"] == pytest.approx(ref.low, abs=0.008)
    assert ci["accuracy"]["high"] == pytest.approx(ref.high, abs=0.008)
    pos = y == 1  # sensitivity of 'pos' is the accuracy on positive images, resampled with them
    sens_ref = scipy.stats.bootstrap(((p[pos] == 1).astype(float),), np.mean, n_resamples=4000,
                                     method="percentile", rng=np.random.default_rng(2)).confidence_interval
    assert ci["per_class"]["pos"]["sensitivity"]["low"] == pytest.approx(sens_ref.low, abs=0.015)
    assert ci["per_class"]["pos"]["sensitivity"]["high"] == pytest.approx(sens_ref.high, abs=0.015)


def test_bootstrap_intervals_cover_the_truth_95_percent_of_the_time():
    rng = np.random.default_rng(7)
    hits = 0
    for trial in range(200):  # classifier right with probability 0.8: the true accuracy is 0.8
        y = rng.integers(0, 2, 150)
        p = np.where(rng.random(150) < 0.8, y, 1 - y)
        ci = bootstrap_intervals(y, p, ["a", "b"], n_boot=500, seed=trial)["accuracy"]
        hits += ci["low"] <= 0.8 <= ci["high"]
    assert 0.89 <= hits / 200 <= 0.99  # binomial sd of the coverage estimate: 0.015


def test_bootstrap_reports_undefined_resamples_and_checks_options():
    y, p = np.array([0] * 60 + [1]), np.array([0] * 60 + [1])  # one positive: often absent from a resample
    ci = bootstrap_intervals(y, p, ["neg", "pos"], n_boot=500, seed=0)
    undefined = ci["per_class"]["pos"]["sensitivity"]["undefined"]
    assert 500 * 0.3 < undefined < 500 * 0.45  # P(the positive is never drawn) = (60/61)^61 ~ 0.36
    with pytest.raises(ConfigError, match="confidence level"):
        bootstrap_intervals(y, p, ["neg", "pos"], level=95)
    with pytest.raises(ConfigError, match="at least 100"):
        bootstrap_intervals(y, p, ["neg", "pos"], n_boot=10)


# ------------------------------------------------------------------------------------------------ calibration
@pytest.mark.parametrize("n_bins", [10, 15])
def test_calibration_bins_match_torchmetrics_and_sklearn(n_bins):
    logits, y = overconfident(0)
    probs = softmax(logits)
    c = calibration_bins(probs, y, n_bins=n_bins)
    p, t = torch.from_numpy(probs), torch.from_numpy(y)
    assert c["ece"] == pytest.approx(float(multiclass_calibration_error(p, t, 5, n_bins=n_bins)), abs=1e-6)  # float32 there
    assert c["mce"] == pytest.approx(float(multiclass_calibration_error(p, t, 5, n_bins=n_bins, norm="max")),
                                     abs=1e-6)
    assert c["nll"] == pytest.approx(skm.log_loss(y, probs, labels=range(5)), abs=1e-9)
    onehot = np.eye(5)[y]
    assert c["brier"] == pytest.approx(((probs - onehot) ** 2).sum(1).mean(), abs=1e-12)
    assert sum(c["count"]) == len(y)


def test_temperature_scaling_recovers_the_overconfidence_and_keeps_the_classes():
    logits, y = overconfident(1, temperature=2.5)
    probs = softmax(logits)
    t = fit_temperature(logits, y)
    assert t == pytest.approx(reference_temperature(logits, y), rel=1e-5)
    assert t == pytest.approx(2.5, rel=0.1)  # the generating temperature, up to sampling noise
    scaled = apply_temperature(logits, t)
    np.testing.assert_array_equal(scaled.argmax(1), probs.argmax(1))
    np.testing.assert_allclose(scaled, softmax(logits / t), rtol=0, atol=1e-12)
    assert calibration_bins(scaled, y)["ece"] < 0.3 * calibration_bins(probs, y)["ece"]


def test_temperature_is_fitted_on_logits_when_probabilities_underflow():
    """5,000 images, 10 classes, a model overconfident by T = 8: about 2 % of the true-class probabilities are
    below 1e-12. A fit on probabilities clipped at 1e-12 lands 7 % low (T = 7.32); on the logits it must equal
    SciPy's fit, and scaling must calibrate."""
    logits, y = overconfident(0, n=5000, k=10, temperature=8.0, scale=1.6)
    probs = softmax(logits)
    assert 0.01 < (probs[np.arange(len(y)), y] < 1e-12).mean() < 0.03
    ref = reference_temperature(logits, y)
    assert fit_temperature(logits, y) == pytest.approx(ref, rel=1e-5)
    assert ref == pytest.approx(8.0, rel=0.05)
    clipped = reference_temperature(np.log(np.clip(probs, 1e-12, None)), y)  # what a fit on probabilities finds
    assert clipped < 0.95 * ref
    ece_after = calibration_bins(apply_temperature(logits, fit_temperature(logits, y)), y)["ece"]
    assert ece_after < 0.03 and ece_after < calibration_bins(probs, y)["ece"] / 10
    with pytest.raises(ConfigError, match="finite logits"):
        fit_temperature(np.array([[0.0, np.inf]]), [0])


def test_confident_mistakes_are_the_most_confident_wrong_predictions():
    rng = np.random.default_rng(2)
    probs, y = softmax(rng.normal(size=(200, 4)) * 3), rng.integers(0, 4, 200)
    idx = confident_mistakes(probs, y, n=10)
    wrong = [i for i in range(200) if probs[i].argmax() != y[i]]
    expect = sorted(wrong, key=lambda i: -probs[i].max())[:10]
    assert list(idx) == expect


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    out = tmp_path_factory.mktemp("deeper") / "faces"
    optik.train(data="faces", model="cnn-small", epochs=4, batch_size=32, lr=0.05, out=out, progress=False)
    return out


def test_evaluate_target_sensitivity_is_chosen_on_validation_and_reported_on_test(faces):
    report = json.loads(run_optik("evaluate", faces, "--target-sensitivity", "0.9", "--json").stdout)
    from optik.api import split_logits
    from optik.runs import Run

    model, data = optik.load(faces), Run.open(faces).data()
    pos = model.classes.index(report["binary"]["positive"])
    val_z, val_y = split_logits(model, data.splits["val"])
    val_p = softmax(val_z)
    b = report["binary"]
    assert b["threshold_source"] == "val" and b["target"] == {"sensitivity": 0.9}
    assert b["threshold"] == pytest.approx(threshold_for(val_p[:, pos], val_y == pos, sensitivity=0.9))
    assert operating_point(val_p[:, pos], val_y == pos, b["threshold"])["sensitivity"] >= 0.9

    test_z, test_y = split_logits(model, data.splits["test"])
    test_p = softmax(test_z)
    point = operating_point(test_p[:, pos], test_y == pos, b["threshold"])
    assert (b["tp"], b["fp"], b["tn"], b["fn"]) == (point["tp"], point["fp"], point["tn"], point["fn"])
    assert b["roc_auc"] == pytest.approx(skm.roc_auc_score(test_y == pos, test_p[:, pos]), abs=1e-9)
    assert b["intervals"]["sensitivity"]["low"] <= b["sensitivity"] <= b["intervals"]["sensitivity"]["high"]
    figures = faces / "evaluations" / "faces-test-sens0.9" / "figures"
    assert {p.name for p in figures.iterdir()} >= {"confusion_matrix.png", "reliability.png", "roc_pr.png"}


def test_evaluate_calibrate_fits_the_temperature_on_validation(faces):
    report = optik.evaluate(faces, calibrate=True, n_boot=200)
    from optik.api import split_logits
    from optik.runs import Run

    model, data = optik.load(faces), Run.open(faces).data()
    c = report["calibration"]
    val_z, val_y = split_logits(model, data.splits["val"])
    assert c["temperature"] == pytest.approx(reference_temperature(val_z, val_y), rel=1e-4)
    test_z, test_y = split_logits(model, data.splits["test"])
    assert c["before"]["ece"] == pytest.approx(calibration_bins(softmax(test_z), test_y)["ece"], abs=1e-12)
    assert c["after"]["ece"] == pytest.approx(
        calibration_bins(softmax(test_z / c["temperature"]), test_y)["ece"], abs=1e-9)
    assert report["intervals"]["n_boot"] == 200


def test_default_run_report_has_intervals_calibration_and_figures(faces):
    m = json.loads((faces / "metrics.json").read_text())
    assert m["intervals"]["n_boot"] == 2000 and "roc_auc" in m["binary"] and "ece" in m["calibration"]["before"]
    assert (faces / "figures" / "reliability.png").is_file() and (faces / "figures" / "roc_pr.png").is_file()
    text = run_optik("evaluate", faces).stdout
    assert "ROC AUC" in text and "95% CI" in text and "ECE" in text


def test_evaluate_refuses_bad_targets_and_calibration_without_validation(faces, tmp_path):
    out = run_optik("evaluate", faces, "--target-sensitivity", "1.5", check=False)
    assert out.returncode == 2 and "expected a target sensitivity in (0, 1], got 1.5" in out.stderr
    out = run_optik("evaluate", faces, "--target-sensitivity", "0.9", "--target-specificity", "0.9", check=False)
    assert out.returncode == 2 and "not allowed with argument" in out.stderr
    run = tmp_path / "noval"
    optik.train(data="faces", model="cnn-small", epochs=1, val_fraction=0, out=run, progress=False)
    with pytest.raises(ConfigError, match="needs a validation split"):
        optik.evaluate(run, calibrate=True)
    report = optik.evaluate(run, target_specificity=0.9, n_boot=0)  # falls back to the test split, flagged
    assert report["binary"]["threshold_source"] == "evaluated split"
    assert any("optimistic" in f for f in report["flags"]) and "intervals" not in report
