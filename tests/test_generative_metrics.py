"""Sample-quality metrics: FID / KID against torchmetrics and closed forms, precision / recall against brute
force, feature extractors against manual forward passes."""
import json
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
import torchvision
from safetensors.torch import save_file

import optik
from optik.core.errors import CheckpointError, DataError
from optik.generative import metrics as gm
from optik.generative.metrics import (INCEPTION_FILE, INCEPTION_URL, ClassifierFeatures, FeatureStats,
                                      InceptionFeatures, class_histogram, extract_features, fid, frechet_distance,
                                      kid, precision_recall, sample_quality)
from optik.models.registry import create_classifier

CLASSES = [str(i) for i in range(10)]


def make_classifier(model="cnn-small", seed=0):
    torch.manual_seed(seed)
    return create_classifier(model, classes=CLASSES, in_channels=1, input_size=(28, 28), mean=[0.13], std=[0.3])


@pytest.fixture(scope="module")
def mnist():
    """600 MNIST images as uint8 ``600 x 1 x 28 x 28``, shuffled (mnist5k is sorted by class), so both halves
    hold every digit."""
    order = torch.randperm(5000, generator=torch.Generator().manual_seed(0))[:600]
    return optik.load_dataset("mnist5k").images[order].clone()


@pytest.fixture(scope="module")
def extractor(mnist):
    return ClassifierFeatures(make_classifier()).fit_scale(mnist[:300])


def noisy(images, sigma, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = images.float() / 255
    return (x + sigma * torch.randn(x.shape, generator=g)).clamp(0, 1)


# ---------------------------------------------------------------- FID / KID against references

def test_fid_of_a_set_with_itself_is_zero(extractor, mnist):
    f = extract_features(extractor, mnist)
    assert abs(fid(f, f)) < 1e-6
    assert fid(f[:300], f[300:]) > 1e-3  # two halves of MNIST: small but not zero


def test_fid_and_kid_agree_with_torchmetrics(extractor, mnist):
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    real, fake = mnist[:300].float() / 255, noisy(mnist[300:], 0.2)
    f_real, f_fake = extract_features(extractor, real), extract_features(extractor, fake)
    tm_fid = FrechetInceptionDistance(feature=extractor, normalize=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchmetrics warns that KID keeps every feature in memory
        tm_kid = KernelInceptionDistance(feature=extractor, subsets=2, subset_size=300, normalize=True)
    for metric in (tm_fid, tm_kid):
        metric.update(real, real=True)
        metric.update(fake, real=False)
    ours = fid(f_real, f_fake)
    assert ours == pytest.approx(float(tm_fid.compute()), rel=1e-3)
    # subset_size = the whole set: every subset is a permutation, so there is no randomness left to differ in
    kid_mean, kid_std = kid(f_real, f_fake, subsets=2, subset_size=300)
    tm_mean, tm_std = tm_kid.compute()
    assert kid_mean == pytest.approx(float(tm_mean), rel=1e-3)
    assert kid_std < 1e-6 * abs(kid_mean) and float(tm_std) < 1e-4 * abs(float(tm_mean))


def test_frechet_distance_closed_form_for_diagonal_gaussians():
    t = lambda *v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    mu_a, mu_b = t(0.0, 1.0, -2.0), t(1.0, 1.0, 0.5)
    var_a, var_b = t(1.0, 4.0, 0.25), t(9.0, 1.0, 0.25)
    by_hand = ((mu_a - mu_b) ** 2).sum() + (var_a + var_b - 2 * (var_a * var_b).sqrt()).sum()  # 7.25 + 4 + 1 + 0
    got = frechet_distance(FeatureStats(mu_a, torch.diag(var_a), 1000), FeatureStats(mu_b, torch.diag(var_b), 1000))
    assert got == pytest.approx(float(by_hand), abs=1e-6) and float(by_hand) == pytest.approx(12.25)


def test_frechet_distance_matches_scipy_sqrtm_for_full_covariances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(400, 6)), rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 0.3
    stats_a, stats_b = FeatureStats.from_features(a), FeatureStats.from_features(b)
    np.testing.assert_allclose(stats_a.cov.numpy(), np.cov(a, rowvar=False), rtol=1e-12)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * scipy.linalg.sqrtm(ca @ cb).real)
    assert fid(a, b) == pytest.approx(ref, rel=1e-9)
    assert frechet_distance(stats_a, stats_b) == pytest.approx(frechet_distance(stats_b, stats_a), rel=1e-9)


def test_fid_and_kid_grow_with_the_perturbation(extractor, mnist):
    f_real = extract_features(extractor, mnist[:300])
    fids, kids, precisions = [], [], []
    for sigma in (0.05, 0.15, 0.3):
        f_fake = extract_features(extractor, noisy(mnist[300:], sigma))
        fids.append(fid(f_real, f_fake))
        kids.append(kid(f_real, f_fake, subsets=10, subset_size=200)[0])
        precisions.append(precision_recall(f_real, f_fake)[0])
    assert fids[0] < fids[1] < fids[2], fids
    assert kids[0] < kids[1] < kids[2], kids
    assert precisions[0] > precisions[1] > precisions[2], precisions


def test_fewer_samples_than_dimensions_warns_and_enough_does_not():
    rng = np.random.default_rng(0)
    with pytest.warns(UserWarning, match=r"50 and 200 samples of 64-dimensional.*singular.*biased"):
        fid(rng.normal(size=(50, 64)), rng.normal(size=(200, 64)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fid(rng.normal(size=(64, 64)), rng.normal(size=(200, 64)))


def test_kid_is_seeded_and_clips_the_subset_size():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(120, 8)), rng.normal(size=(80, 8)) + 0.5
    assert kid(a, b, subsets=5, subset_size=50, seed=3) == kid(a, b, subsets=5, subset_size=50, seed=3)
    assert kid(a, b, subsets=5, subset_size=50, seed=3) != kid(a, b, subsets=5, subset_size=50, seed=4)
    mean, _ = kid(a, b, subsets=3, subset_size=1000)  # clipped to 80
    x, y = torch.tensor(a[:80]), torch.tensor(b)
    k = lambda p, q: (p @ q.T / 8 + 1) ** 3  # noqa: E731
    m = 80
    by_hand = ((k(x, x).sum() - k(x, x).trace()) / (m * (m - 1)) + (k(y, y).sum() - k(y, y).trace()) / (m * (m - 1))
               - 2 * k(x, y).mean())
    assert kid(a[:80], b, subsets=1, subset_size=1000)[0] == pytest.approx(float(by_hand), rel=1e-9)
    assert mean > 0


def test_mismatched_feature_dimensions_are_a_clear_error():
    with pytest.raises(DataError, match="same dimension"):
        fid(np.zeros((10, 3)), np.zeros((10, 4)))


# ---------------------------------------------------------------- precision / recall

def brute_force_precision_recall(real, fake, k):
    def radii(f):
        d = np.linalg.norm(f[:, None] - f[None], axis=-1)
        return np.sort(d, axis=1)[:, k]  # column 0 is the sample itself

    def inside(q, s, r):
        return (np.linalg.norm(q[:, None] - s[None], axis=-1) <= r[None]).any(axis=1).mean()

    return inside(fake, real, radii(real)), inside(real, fake, radii(fake))


def test_precision_recall_identical_and_disjoint_sets():
    f = np.random.default_rng(0).normal(size=(100, 5))
    assert precision_recall(f, f, k=3) == (1.0, 1.0)
    assert precision_recall(f, f + 100, k=3) == (0.0, 0.0)


def test_precision_recall_matches_brute_force_in_chunks(monkeypatch):
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(60, 4)), rng.normal(size=(50, 4)) * 1.3 + 0.4
    expected = brute_force_precision_recall(real, fake, 3)
    assert 0 < expected[0] < 1 and 0 < expected[1] < 1
    assert precision_recall(real, fake, k=3) == pytest.approx(expected, abs=1e-12)
    monkeypatch.setattr(gm, "_CHUNK_ENTRIES", 130)  # two or three rows per chunk
    assert precision_recall(real, fake, k=3) == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- feature extractors

def test_classifier_features_take_the_pre_relu_fc128_of_the_default_cnn(mnist):
    clf = make_classifier("cnn")
    fe = ClassifierFeatures(clf)
    x = mnist[:50].float() / 255
    f = fe(x)
    k = next(i for i, m in enumerate(clf.net) if isinstance(m, torch.nn.Linear) and m.out_features == 128)
    clf.eval()
    with torch.no_grad():
        manual = clf.net[:k + 1](clf.prepare(x))
    assert fe.num_features == 128 and f.shape == (50, 128)
    assert (f < 0).any()  # before the ReLU
    torch.testing.assert_close(f, manual, rtol=0, atol=0)


def test_classifier_features_take_the_pooled_map_of_cnn_small_and_restore_modes(mnist):
    clf = make_classifier("cnn-small")
    clf.train()
    clf.net[1].eval()  # a frozen BatchNorm, as transfer learning leaves it
    modes = [m.training for m in clf.modules()]
    fe = ClassifierFeatures(clf)
    x = mnist[:50].float() / 255
    f = fe(x)
    assert [m.training for m in clf.modules()] == modes and not f.requires_grad
    clf.eval()
    with torch.no_grad():
        manual = clf.net[:-1](clf.prepare(x))
    assert fe.num_features == 64 and f.shape == (50, 64)
    torch.testing.assert_close(f, manual, rtol=0, atol=0)


def test_classifier_features_of_a_timm_net_are_its_pre_logits():
    clf = create_classifier("test_resnet", classes=list("abc"), in_channels=1, input_size=(28, 28),
                            net_input_size=32).eval()
    x = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    fe = ClassifierFeatures(clf)
    f = fe(x)
    assert f.shape == (4, fe.num_features)
    with torch.no_grad():
        torch.testing.assert_close(clf.net.get_classifier()(f), clf(x))


def test_fit_scale_gives_unit_rms_and_is_saved(mnist):
    fe = ClassifierFeatures(make_classifier("cnn")).fit_scale(mnist[:200], batch_size=64)
    f = extract_features(fe, mnist[:200])
    assert f.square().mean().sqrt().item() == pytest.approx(1.0, abs=1e-6)
    assert fe.state_dict()["scale"].item() == fe.scale.item() != 1.0
    fresh = ClassifierFeatures(make_classifier("cnn", seed=1))
    fresh.load_state_dict(fe.state_dict())
    torch.testing.assert_close(extract_features(fresh, mnist[:20]), f[:20])


def test_features_do_not_depend_on_batch_size_or_input_dtype(mnist):
    fe = ClassifierFeatures(make_classifier("cnn-small").double())  # float64 net: differences are round-off only
    a, b = extract_features(fe, mnist[:200], batch_size=7), extract_features(fe, mnist[:200], batch_size=500)
    assert a.dtype == torch.float64 and (a - b).abs().max().item() < 1e-9
    assert abs(fid(a[:100], a[100:]) - fid(b[:100], b[100:])) < 1e-9
    c = extract_features(fe, mnist[:200].double() / 255, batch_size=500)  # float pixels = uint8 / 255
    assert (a - c).abs().max().item() < 1e-6


def test_extract_features_rejects_unnormalized_floats(extractor, mnist):
    with pytest.raises(DataError, match=r"in \[0, 1\]"):
        extract_features(extractor, mnist[:10].float())


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    torch.manual_seed(0)
    net = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False)
    path = tmp_path_factory.mktemp("weights") / INCEPTION_FILE
    torch.save(net.state_dict(), path)
    return path


def test_inception_features_load_a_torchvision_state_dict(inception_file, mnist, tmp_path):
    fe = InceptionFeatures(inception_file)
    f = extract_features(fe, mnist[:2])
    assert f.shape == (2, 2048) and torch.isfinite(f).all() and (f >= 0).all()
    converted = tmp_path / "inception.safetensors"
    save_file(torch.load(inception_file, weights_only=True), str(converted))
    torch.testing.assert_close(InceptionFeatures(converted).state_dict(), fe.state_dict(), rtol=0, atol=0)


def test_inception_features_missing_file_names_the_file_and_url(tmp_path):
    with pytest.raises(CheckpointError, match=INCEPTION_FILE) as e:
        InceptionFeatures(tmp_path / INCEPTION_FILE)
    assert INCEPTION_URL in str(e.value) and "never downloads" in str(e.value)


def test_inception_features_wrong_tensors_are_a_checkpoint_error(tmp_path, inception_file):
    torch.save({"conv.weight": torch.zeros(3, 3)}, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match="missing tensors"):
        InceptionFeatures(tmp_path / "wrong.pth")
    state = torch.load(inception_file, weights_only=True)
    state["Conv2d_1a_3x3.conv.weight"] = torch.zeros(1, 3, 3, 3)
    torch.save(state, tmp_path / "wrong_shape.pth")
    with pytest.raises(CheckpointError, match="does not fit"):
        InceptionFeatures(tmp_path / "wrong_shape.pth")


# ---------------------------------------------------------------- histogram and the report

def test_class_histogram_counts_argmax_predictions(mnist):
    clf = make_classifier("cnn-small")
    hist = class_histogram(clf, mnist[:300], batch_size=64)
    clf.eval()
    with torch.no_grad():
        manual = np.bincount(clf(mnist[:300].float() / 255).argmax(1).numpy(), minlength=10)
    assert list(hist["counts"].values()) == manual.tolist() and list(hist["counts"]) == CLASSES
    assert hist["n"] == 300 and sum(hist["fractions"].values()) == pytest.approx(1.0)
    assert hist["missing"] == [c for c, n in zip(CLASSES, manual) if n / 300 < 0.05]
    assert hist["num_missing"] == len(hist["missing"])


def test_sample_quality_is_json_ready(extractor, mnist):
    out = sample_quality(mnist[:300], noisy(mnist[300:], 0.1), extractor=extractor, kid_subsets=5,
                         classifier=extractor.classifier)
    json.dumps(out)
    assert set(out) == {"fid", "kid_mean", "kid_std", "precision", "recall", "n_real", "n_fake", "feature_dim",
                        "class_histogram"}
    assert (out["n_real"], out["n_fake"], out["feature_dim"]) == (300, 300, 64)
    assert out["fid"] > 0 and 0 <= out["precision"] <= 1 and 0 <= out["recall"] <= 1
    assert all(isinstance(out[k], float) for k in ("fid", "kid_mean", "kid_std", "precision", "recall"))
