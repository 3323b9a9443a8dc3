"""The attribute probe: a planted attribute is found, a random one is not; the AUC and its interval against
scikit-learn; the errors and the verdict's words."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from optik.core.errors import DataError
from optik.data.handles import MemorySplit, at_most
from optik.evaluation import probe as pr
from optik.evaluation.probe import probe_attribute, probe_auc, split_features, split_pixels, verdict
from optik.models.features import ClassifierFeatures
from optik.models.registry import create_classifier

N_TRAIN, N_TEST = 2000, 4000  # null AUC sd = sqrt((n + 1) / (12 n1 n0)) ~ 0.009 at 4,000 test images
N_BOOT = 500


def bars(labels: np.ndarray, site: np.ndarray, *, seed: int) -> torch.Tensor:
    """uint8 ``N x 1 x 32 x 32`` images: a horizontal (label 0) or vertical (label 1) bright bar at a random
    place on noise; images from ``site`` 1 are 4 grey levels brighter, as a scanner's offset would make them."""
    rng = np.random.default_rng(seed)
    n = len(labels)
    images = rng.integers(0, 60, size=(n, 1, 32, 32)).astype(np.int64)
    for i, (label, r, c) in enumerate(zip(labels, rng.integers(8, 22, n), rng.integers(8, 22, n))):
        if label == 0:
            images[i, 0, r:r + 2, 6:26] = 200
        else:
            images[i, 0, 6:26, c:c + 2] = 200
    # Faint: 4 of 255 grey levels under noise of std 17 (a 5 x 5 corner patch of +50, tried first, was seen by an
    # untrained net, AUC 0.96, but the trained one had learned to ignore it: 0.59)
    images[site.astype(bool)] += 4
    return torch.from_numpy(images.clip(0, 255).astype(np.uint8))


def memory_split(images: torch.Tensor, labels: np.ndarray) -> MemorySplit:
    return MemorySplit(images, torch.arange(len(images)), torch.from_numpy(labels), classes=["h", "v"])


def train_cnn(split: MemorySplit, *, epochs: int = 1, seed: int = 0):
    """cnn-small trained on the bars for a few epochs (a plain loop: the model, not the trainer, is under test)."""
    with torch.random.fork_rng():  # the test's seed, not the session's
        torch.manual_seed(seed)
        model = create_classifier("cnn-small", classes=split.classes, in_channels=1, input_size=(32, 32),
                                  mean=[0.2], std=[0.25])
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        model.train()
        for epoch in range(epochs):
            for images, y in split.batches(128, shuffle=True, seed=seed + epoch):
                loss = F.cross_entropy(model(images.float() / 255), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def shortcut_data():
    """The model's training split, where the site agrees with the label 90 % of the time (a shortcut to learn),
    and a test split where it is independent of the label; the model trained on the first."""
    rng = np.random.default_rng(1)
    train_labels, test_labels = rng.integers(0, 2, N_TRAIN), rng.integers(0, 2, N_TEST)
    train_site = np.where(rng.random(N_TRAIN) < 0.9, train_labels, 1 - train_labels)
    test_site = rng.integers(0, 2, N_TEST)
    train = memory_split(bars(train_labels, train_site, seed=10), train_labels)
    test = memory_split(bars(test_labels, test_site, seed=11), test_labels)
    return train_cnn(train), train, test, train_site, test_site


# ------------------------------------------------------------------------------------------------ the bars
def test_a_planted_attribute_is_found_and_called_a_shortcut(shortcut_data):
    model, train, test, train_site, test_site = shortcut_data
    out = probe_attribute(model, train, test, train_site, test_site, attribute="site", n_boot=N_BOOT)
    print(f"planted: features AUC {out['features']['auc']:.4f} {out['features']['interval']}, "
          f"pixels {out['pixels']['auc']:.4f}")
    assert out["features"]["auc"] >= 0.9
    assert out["shortcut"] is True and out["features"]["interval"]["low"] > 0.5
    assert out["verdict"].startswith("The model's features predict 'site' far better than chance (AUC ")
    assert out["verdict"].endswith("the model can use it as a shortcut.")
    assert "95 % CI [" in out["verdict"] and f"raw pixels {out['pixels']['auc']:.2f}" in out["verdict"]
    assert (out["n_train"], out["n_test"], out["values"]) == (N_TRAIN, N_TEST, [0, 1])
    assert out["features"]["dim"] == 64 and out["pixels"]["dim"] == 32 * 32
    assert json.loads(json.dumps(out)) == out  # JSON-ready


def test_a_random_attribute_is_not_found(shortcut_data):
    model, train, test, _, _ = shortcut_data
    rng = np.random.default_rng(2)  # assigned at random: not in the pixels
    train_sex, test_sex = rng.choice(["F", "M"], N_TRAIN), rng.choice(["F", "M"], N_TEST)
    out = probe_attribute(model, train, test, train_sex, test_sex, attribute="sex", n_boot=N_BOOT)
    print(f"not planted: features AUC {out['features']['auc']:.4f} {out['features']['interval']}, "
          f"pixels {out['pixels']['auc']:.4f}")
    assert abs(out["features"]["auc"] - 0.5) <= 0.05 and abs(out["pixels"]["auc"] - 0.5) <= 0.05
    assert out["shortcut"] is False and out["values"] == ["F", "M"] and out["missing"] == {"train": 0, "test": 0}
    assert out["verdict"].startswith("No evidence that the model's features predict 'sex': the AUC is not "
                                     "reliably above chance (AUC 0.")


# ------------------------------------------------------------------------------------------------ inputs
def test_split_features_draw_at_most_max_images_in_order(shortcut_data):
    model, _, test, _, _ = shortcut_data
    features, positions = split_features(model, test, max_images=300, seed=5, batch_size=128)
    drawn = at_most(test, 300, seed=5)
    assert features.shape == (300, 64) and features.dtype == np.float64
    assert (np.diff(positions) > 0).all() and (test.index[positions] == drawn.index).all()
    expected = ClassifierFeatures(model)(test.take(positions).float() / 255)
    np.testing.assert_allclose(features, expected.double().numpy(), rtol=0, atol=1e-5)
    whole, every = split_features(model, test.subset(torch.arange(50)))
    assert whole.shape == (50, 64) and (every == np.arange(50)).all()


def test_split_pixels_average_blocks_down_to_size():
    images = torch.randint(0, 256, (6, 3, 40, 24), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    split = MemorySplit(images, torch.arange(6), torch.zeros(6), classes=["a"])
    pixels, positions = split_pixels(split, size=8)
    assert pixels.shape == (6, 3 * 8 * 8) and (positions == np.arange(6)).all()
    blocks = images.double().div(255).reshape(6, 3, 8, 5, 8, 3).mean((3, 5))  # 40 / 8 = 5 rows, 24 / 8 = 3 cols
    np.testing.assert_allclose(pixels, blocks.flatten(1).numpy(), atol=1e-6)
    small, _ = split_pixels(split, size=32)  # 40 x 24 -> 32 x 24: only the long side shrinks
    assert small.shape == (6, 3 * 32 * 24) and 0 <= small.min() and small.max() <= 1


# ------------------------------------------------------------------------------------------------ the probe
def gaussian_features(n: int, k: int, *, shift: float, seed: int):
    """``n x 8`` features whose first two dimensions move with one of ``k`` values."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, k, n)
    x = rng.normal(size=(n, 8))
    x[:, 0] += shift * values
    x[:, 1] += shift * (values == 0)
    return x * [1, 10, 1, 1, 100, 1, 1, 1], values  # unequal scales: the probe standardizes


def sklearn_auc(train_x, train_y, test_x, test_y) -> float:
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=pr.PROBE_C, max_iter=2000)).fit(train_x, train_y)
    proba = probe.predict_proba(test_x)
    if proba.shape[1] == 2:
        return roc_auc_score(test_y, proba[:, 1])
    return roc_auc_score(test_y, proba, multi_class="ovr", average="macro")


@pytest.mark.parametrize("k", [2, 3])
def test_probe_auc_matches_sklearn(k):
    x, y = gaussian_features(1500, k, shift=0.6, seed=k)
    out = probe_auc(x[:1000], y[:1000], x[1000:], y[1000:], n_boot=200)
    assert out["auc"] == pytest.approx(sklearn_auc(x[:1000], y[:1000], x[1000:], y[1000:]), abs=1e-12)
    assert 0.6 < out["auc"] < 0.95 and out["converged"]
    assert out["values"] == list(range(k)) and out["average"] == ("binary" if k == 2 else "one-vs-rest macro")
    assert sum(out["test_counts"]) == out["n_test"] == 500 and out["dim"] == 8


def test_multi_value_names_are_kept_and_each_value_counts():
    x, y = gaussian_features(1200, 3, shift=1.0, seed=7)
    names = np.array(["CT", "MR", "XR"])[y]
    out = probe_auc(x[:800], names[:800], x[800:], names[800:], n_boot=200)
    assert out["values"] == ["CT", "MR", "XR"] and out["test_counts"] == np.bincount(y[800:]).tolist()
    assert out["auc"] == pytest.approx(probe_auc(x[:800], y[:800], x[800:], y[800:], n_boot=200)["auc"], abs=1e-12)


def test_bootstrap_interval_holds_the_estimate_and_repeats_with_its_seed():
    x, y = gaussian_features(1200, 3, shift=0.5, seed=3)
    a = probe_auc(x[:800], y[:800], x[800:], y[800:], n_boot=300, seed=4)
    b = probe_auc(x[:800], y[:800], x[800:], y[800:], n_boot=300, seed=4)
    c = probe_auc(x[:800], y[:800], x[800:], y[800:], n_boot=300, seed=5)
    assert a["interval"]["low"] < a["auc"] < a["interval"]["high"] and a["interval"]["undefined"] == 0
    assert a["interval"] == b["interval"] and a["interval"] != c["interval"]
    assert 0.02 < a["interval"]["high"] - a["interval"]["low"] < 0.2  # 400 test images: a few points either way


def test_resampled_auc_is_the_auc_of_the_resample():
    """Each bootstrap AUC equals sklearn's on the images the resample drew (with their repeats), ties included."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    proba = rng.dirichlet(np.ones(3), 60).round(1)  # rounded: many ties
    counts = rng.integers(0, 3, (4, 60)).astype(np.float64)
    for row in counts:
        idx = np.repeat(np.arange(60), row.astype(int))
        got = np.mean([pr._weighted_auc(proba[:, c], y == c, row[None]) for c in range(3)])
        expected = np.mean([roc_auc_score(y[idx] == c, proba[idx, c]) for c in range(3)])
        assert got == pytest.approx(expected, abs=1e-12)


def test_resamples_missing_a_value_are_skipped_and_counted():
    y = np.r_[np.ones(2, int), np.zeros(8, int)]  # 2 of 10 positive: about 11 % of resamples draw none
    proba = np.c_[1 - np.linspace(0, 1, 10), np.linspace(0, 1, 10)]
    resampled = pr._resampled_auc(y, proba, n_boot=1000, seed=0)
    missing = np.isnan(resampled).sum()
    assert 60 < missing < 170 and pr._interval(resampled, 0.95)["undefined"] == missing


# ------------------------------------------------------------------------------------------------ errors
def test_one_distinct_value_is_refused():
    x = np.random.default_rng(0).normal(size=(40, 3))
    with pytest.raises(DataError, match=r"expected at least 2 distinct values of the attribute .*, got '1 \(M\)'"):
        probe_auc(x[:20], ["M"] * 20, x[20:], ["M"] * 20)


def test_rare_and_unseen_values_are_refused():
    x = np.random.default_rng(0).normal(size=(60, 3))
    train = np.array(["F"] * 25 + ["M"] * 5)
    with pytest.raises(DataError, match=r"at least 10 training images of each value of 'sex', got \{'M': 5\}"):
        probe_auc(x[:30], train, x[30:], np.array(["F", "M"] * 15), name="'sex'")
    train, test = np.array(["F", "M"] * 15), np.array(["F", "M", "U"] * 10)
    with pytest.raises(DataError, match=r"among the training images' \['F', 'M'\], got \['U'\]"):
        probe_auc(x[:30], train, x[30:], test)
    with pytest.raises(DataError, match=r"one attribute value per training image \(30\)"):
        probe_auc(x[:30], train[:29], x[30:], train)
    with pytest.raises(DataError, match=r"a value for every test image, got '4 missing \(None, NaN or empty\)'"):
        probe_auc(x[:30], train, x[30:], np.array(["F", "M"] * 13 + [None] * 4, dtype=object))


# ------------------------------------------------------------------------------------------------ the verdict
def probe_result(auc, low, high):
    return {"auc": auc, "interval": {"low": low, "high": high, "undefined": 0}, "level": 0.95}


def test_verdict_names_the_rule_in_words():
    pixels = probe_result(0.61, 0.58, 0.64)
    assert verdict("sex", probe_result(0.93, 0.91, 0.95), pixels) == (
        "The model's features predict 'sex' far better than chance (AUC 0.93, 95 % CI [0.91, 0.95]; raw pixels "
        "0.61): the model can use it as a shortcut.")
    assert verdict("sex", probe_result(0.62, 0.55, 0.69), pixels).startswith(
        "Weak evidence: the model's features predict 'sex' somewhat better than chance (AUC 0.62")
    assert verdict("sex", probe_result(0.52, 0.48, 0.56), pixels) == (
        "No evidence that the model's features predict 'sex': the AUC is not reliably above chance (AUC 0.52, "
        "95 % CI [0.48, 0.56]; raw pixels 0.61).")
    assert verdict("sex", probe_result(0.47, 0.45, 0.49), pixels).startswith("No evidence")  # below: no better
    assert not pr.is_shortcut(probe_result(0.69, 0.6, 0.78)) and not pr.is_shortcut(probe_result(0.75, 0.49, 0.9))


def test_images_without_a_value_are_left_out_and_counted(shortcut_data):
    model, train, test, _, _ = shortcut_data
    train, test = train.subset(torch.arange(300)), test.subset(torch.arange(200))
    rng = np.random.default_rng(3)
    train_sex, test_sex = rng.choice(["F", "M", ""], 300).tolist(), rng.choice(["F", "M", " "], 200).tolist()
    out = probe_attribute(model, train, test, train_sex, test_sex, attribute="sex", n_boot=100)
    missing = {"train": train_sex.count(""), "test": test_sex.count(" ")}
    assert out["missing"] == missing and out["values"] == ["F", "M"]
    assert (out["n_train"], out["n_test"]) == (300 - missing["train"], 200 - missing["test"])
    assert out["pixels"]["n_test"] == out["n_test"]
