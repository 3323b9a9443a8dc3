"""The ImageDataGenerator vocabulary: every op and fill mode against SciPy, flips exact, replayable."""
import numpy as np
import pytest
import torch
from scipy import ndimage

from optik.augment.generator import AugmentConfig, apply, augment, sample_params
from optik.core.errors import ConfigError
from optik.core.seed import generator

SCIPY_MODE = {"nearest": "nearest", "reflect": "reflect", "wrap": "grid-wrap", "constant": "grid-constant"}
H, W = 23, 31


def identity(n=1, **over):
    p = {"angle": 0.0, "dy": 0.0, "dx": 0.0, "shear": 0.0, "zy": 1.0, "zx": 1.0, "flip_h": False,
         "flip_v": False, "brightness": 1.0, "channel_shift": 0.0}
    p.update(over)
    return {k: torch.tensor([v] * n) for k, v in p.items()}


@pytest.fixture
def img():
    return np.random.default_rng(0).random((H, W)).astype(np.float32)


def run(img, params, **cfg):
    x = torch.from_numpy(img)[None, None]
    return apply(x, params, AugmentConfig(**cfg))[0, 0].numpy()


def centre(a, m=6):
    return a[m:-m, m:-m]


@pytest.mark.parametrize("mode", list(SCIPY_MODE))
def test_rotation_against_scipy_every_fill_mode(img, mode):
    out = run(img, identity(angle=30.0), fill_mode=mode, cval=0.25)
    ref = ndimage.rotate(img, 30.0, reshape=False, order=1, mode=SCIPY_MODE[mode], cval=0.25)
    assert np.abs(out - ref).mean() <= 0.5 / 255 and np.abs(out - ref).max() < 1e-4  # whole image, borders too


@pytest.mark.parametrize("mode", list(SCIPY_MODE))
def test_shift_against_scipy_every_fill_mode(img, mode):
    """Keras' tx / ty move the sampled point: the image moves the other way (dy = -3 moves it 3 rows down)."""
    out = run(img, identity(dy=-3.0, dx=5.5), fill_mode=mode, cval=0.7)
    ref = ndimage.shift(img, (3.0, -5.5), order=1, mode=SCIPY_MODE[mode], cval=0.7)
    assert np.abs(out - ref).max() < 1e-4
    if mode == "wrap":  # period n: the rows shifted out at the bottom come back at the top
        np.testing.assert_allclose(run(img, identity(dy=-3.0), fill_mode="wrap")[:3], img[-3:], atol=1e-5)
    if mode == "constant":
        assert np.allclose(run(img, identity(dy=-3.0), fill_mode="constant", cval=0.7)[:3], 0.7)


@pytest.mark.parametrize("zy,zx", [(0.8, 0.8), (1.25, 0.9)])
def test_zoom_has_keras_meaning_against_scipy(img, zy, zx):
    """Keras: the factor scales the sampled field of view (input = z * (output - c) + c): < 1 zooms in."""
    out = run(img, identity(zy=zy, zx=zx), fill_mode="reflect")
    c = (np.array(img.shape) - 1) / 2
    z = np.diag([zy, zx])
    ref = ndimage.affine_transform(img, z, offset=c - z @ c, order=1, mode="reflect")
    assert np.abs(out - ref).max() < 1e-4


def test_shear_tilts_vertical_lines_counter_clockwise():
    """Keras' shear: output (x, y) samples input (x - sin(s) y, cos(s) y), so a vertical line through the centre
    runs through column offset sin(s) * row offset (top to the left, bottom to the right)."""
    a = np.zeros((41, 41), dtype=np.float32)
    a[:, 20] = 1.0  # a vertical line through the centre
    out = run(a, identity(shear=20.0), fill_mode="constant")
    for r in (5, 10, 30, 35):
        expected = 20 + (r - 20) * np.sin(np.deg2rad(20.0))
        got = (out[r] * np.arange(41)).sum() / out[r].sum()
        assert abs(got - expected) < 0.05
    assert np.allclose(run(a.T.copy(), identity(shear=20.0), fill_mode="constant")[20], a.T[20], atol=1e-5)


def test_rotation_is_counter_clockwise_on_screen():
    a = np.zeros((9, 9), dtype=np.float32)
    a[4, 7] = 1.0  # right of the centre
    out = run(a, identity(angle=90.0), fill_mode="constant")
    assert np.unravel_index(out.argmax(), out.shape) == (1, 4)  # now above it


def test_flips_exact_and_photometric(img):
    x = torch.from_numpy(np.stack([img, img[::-1].copy()]))[:, None]
    p = identity(2, brightness=1.5, channel_shift=0.1)
    p["flip_h"] = torch.tensor([True, False])
    p["flip_v"] = torch.tensor([False, True])
    cfg = AugmentConfig(horizontal_flip=True, vertical_flip=True, brightness_range=(1.5, 1.5),
                        channel_shift_range=0.1, rescale=0.5)
    out = apply(x, p, cfg).numpy()
    shifted0 = np.clip(img[:, ::-1] + 0.1, img.min(), img.max())
    np.testing.assert_allclose(out[0, 0], shifted0 * 1.5 * 0.5, atol=1e-6)
    np.testing.assert_allclose(out[1, 0], np.clip(img + 0.1, img.min(), img.max()) * 1.5 * 0.5, atol=1e-6)


KERAS_DRAWS = {  # Keras' transform parameter -> optik's
    "theta": "angle", "tx": "dy", "ty": "dx", "shear": "shear", "zx": "zx", "zy": "zy", "flip_horizontal": "flip_h",
    "flip_vertical": "flip_v", "brightness": "brightness", "channel_shift_intensity": "channel_shift"}


@pytest.mark.parametrize("keras_compat", [False, True])
@pytest.mark.parametrize("knobs,drawn", [
    (dict(rotation_range=30, width_shift_range=0.2, height_shift_range=3, shear_range=15, zoom_range=(0.8, 1.3),
          horizontal_flip=True, vertical_flip=True, brightness_range=(0.5, 1.5), channel_shift_range=0.1), 10),
    (dict(width_shift_range=[-4, 0, 4], height_shift_range=[0.1, 0.2], zoom_range=0.2), 4),
    (dict(width_shift_range=2, height_shift_range=2.5), 2),
], ids=["every-knob", "lists", "int-and-float-pixels"])
def test_draws_match_keras_get_random_transform(knobs, drawn, keras_compat, monkeypatch):
    """4,000 draws of every parameter against 4,000 of Keras' ImageDataGenerator.get_random_transform: continuous
    ones by a two-sample Kolmogorov-Smirnov test, discrete ones (integer and list shifts, flips) by their support
    and a chi-square test of their frequencies. An integer range N means whole pixels 0 .. N-1 times a random sign
    (2 gives -1, 0, 1 with 0 half the time); a list, one of its values times a random sign."""
    from scipy import stats

    monkeypatch.setenv("KERAS_BACKEND", "torch")
    image = pytest.importorskip("keras.src.legacy.preprocessing.image")
    n, shape = 4000, (10, 50)
    kgen = image.ImageDataGenerator(**knobs)
    np.random.seed(0)
    keras = [kgen.get_random_transform((*shape, 1)) for _ in range(n)]
    ours = sample_params(AugmentConfig(**knobs, keras_compat=keras_compat), n, shape, generator=generator(0, "draws"))
    compared = 0
    for kname, oname in KERAS_DRAWS.items():
        k = np.array([np.nan if d[kname] is None else float(d[kname]) for d in keras])
        o = ours[oname].double().numpy()
        if np.isnan(k).all() or np.ptp(k) == 0:  # Keras drew nothing: optik's value is the identity
            assert np.ptp(o) == 0, oname
            continue
        compared += 1
        values = np.unique(k)
        if len(values) <= 10:  # discrete: the same values, in the same proportions
            assert set(np.unique(o)) == set(values), (oname, np.unique(o), values)
            table = [[(k == v).sum() for v in values], [(o == v).sum() for v in values]]
            assert stats.chi2_contingency(table).pvalue > 1e-3, (oname, table)
        else:
            assert stats.ks_2samp(k, o).pvalue > 1e-3, oname
    assert compared == drawn
    if knobs.get("width_shift_range") == 2:
        assert set(ours["dx"].tolist()) == {-1.0, 0.0, 1.0} and (ours["dx"] == 0).float().mean() > 0.45


def test_seeded_replayable_and_probability():
    cfg = AugmentConfig(rotation_range=40, width_shift_range=0.2, height_shift_range=0.2, shear_range=20,
                        zoom_range=0.2, horizontal_flip=True, brightness_range=(0.8, 1.2), fill_mode="wrap")
    x = torch.rand(16, 3, 32, 32)
    a, pa = augment(x, cfg, generator=generator(3, "aug"))
    b, _ = augment(x, cfg, generator=generator(3, "aug"))
    assert torch.equal(a, b) and torch.equal(apply(x, pa, cfg), a)
    never = AugmentConfig(rotation_range=40, zoom_range=0.2, p=0.0)
    out, params = augment(x, never, generator=generator(3, "aug"))
    assert torch.equal(out, x) and (params["angle"] == 0).all()


def test_bad_knobs():
    with pytest.raises(ConfigError, match="fill_mode"):
        AugmentConfig(fill_mode="mirror")
    with pytest.raises(ConfigError, match=r"zoom_range: expected a pair \(lo, hi\) with 0 < lo <= hi"):
        AugmentConfig(zoom_range=(1.2, 0.8))
    with pytest.raises(ConfigError, match=r"zoom_range: expected a float z in \[0, 1\).*got 1.5"):
        AugmentConfig(zoom_range=1.5)
    with pytest.raises(ConfigError, match="rotation_range: expected a value >= 0.*got -10"):
        AugmentConfig(rotation_range=-10)


@pytest.mark.parametrize("mode", list(SCIPY_MODE))
def test_keras_compat_reproduces_keras_image_data_generator(img, mode, monkeypatch):
    """keras_compat=True equals Keras 3's ImageDataGenerator.apply_transform, swapped shifts and all."""
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    image = pytest.importorskip("keras.src.legacy.preprocessing.image")
    keras_params = {"theta": 25.0, "tx": 3.0, "ty": -4.5, "shear": 12.0, "zx": 0.9, "zy": 1.2}
    ref = image.ImageDataGenerator(fill_mode=mode, cval=0.3).apply_transform(img[..., None], keras_params)[..., 0]
    ours = identity(angle=25.0, dy=3.0, dx=-4.5, shear=12.0, zx=0.9, zy=1.2)
    out = run(img, ours, fill_mode=mode, cval=0.3, keras_compat=True)
    assert np.abs(out - ref).max() < 1e-4
    # and the difference Keras' swap makes: its "height" shift moves the image sideways
    only_tx = image.ImageDataGenerator(fill_mode="constant").apply_transform(img[..., None], {"tx": 3.0})[..., 0]
    np.testing.assert_allclose(only_tx[:, :-3], img[:, 3:], atol=1e-5)
    fixed = run(img, identity(dy=-3.0), fill_mode="constant")
    np.testing.assert_allclose(fixed[3:], img[:-3], atol=1e-5)  # optik: a height shift moves it up or down


@pytest.mark.parametrize("mode", ["nearest", "reflect"])
def test_default_geometry_is_keras_with_its_shift_axes_put_right(mode, monkeypatch):
    """On a square image (where Keras' swapped centres coincide) the default equals Keras' apply_transform with
    every op at once, once Keras' shifts are read on the axes it applies them to: its tx (drawn from the height
    range) moves the image sideways, so it is optik's dx. (wrap and constant differ at the borders by design:
    the module docstring's differences 3 and 5.)"""
    monkeypatch.setenv("KERAS_BACKEND", "torch")
    image = pytest.importorskip("keras.src.legacy.preprocessing.image")
    sq = np.random.default_rng(1).random((29, 29)).astype(np.float32)
    keras_params = {"theta": 25.0, "tx": 3.0, "ty": -4.5, "shear": 12.0, "zx": 0.9, "zy": 1.2}
    ref = image.ImageDataGenerator(fill_mode=mode, cval=0.3).apply_transform(sq[..., None], keras_params)[..., 0]
    ours = run(sq, identity(angle=25.0, dx=3.0, dy=-4.5, shear=12.0, zx=0.9, zy=1.2), fill_mode=mode, cval=0.3)
    assert np.abs(ours - ref).max() < 1e-4


def test_shift_is_applied_before_zoom_as_in_keras():
    """R @ T @ Shear @ Zoom: a 3-pixel shift at zoom 0.8 moves the image 3 / 0.8 = 3.75 pixels."""
    r = np.arange(41) - 20.0
    blob = np.exp(-(r[:, None] ** 2 + r[None] ** 2) / (2 * 2.0 ** 2)).astype(np.float32)
    out = run(blob, identity(dx=-3.0, zx=0.8, zy=0.8), fill_mode="constant")
    col = (out.sum(0) * np.arange(41)).sum() / out.sum()
    assert col == pytest.approx(20 + 3.75, abs=0.02)


def test_flips_folded_into_geometry_and_input_untouched(img):
    x = torch.from_numpy(img)[None, None].repeat(2, 1, 1, 1)
    before = x.clone()
    p = identity(2, angle=30.0)
    p["flip_h"] = torch.tensor([True, False])
    p["flip_v"] = torch.tensor([False, True])
    out = apply(x, p, AugmentConfig(fill_mode="reflect", brightness_range=(1, 1))).numpy()
    rotated = ndimage.rotate(img, 30.0, reshape=False, order=1, mode="reflect")
    assert np.abs(out[0, 0] - rotated[:, ::-1]).max() < 1e-4
    assert np.abs(out[1, 0] - rotated[::-1]).max() < 1e-4
    assert torch.equal(x, before)


def test_presets_and_train_knobs():
    from optik import make_config

    assert make_config(augment="none").augmentation() is None
    cfg = make_config(augment="natural", brightness_range="0.8,1.2", horizontal_flip=False).augmentation()
    assert cfg.brightness_range == [0.8, 1.2] and cfg.horizontal_flip is False and cfg.fill_mode == "reflect"
    assert make_config().augmentation().rotation_range == 10  # the default preset
    with pytest.raises(ConfigError, match="augment: expected a preset"):
        make_config(augment="heavy")
    with pytest.raises(ConfigError, match="fill_mode"):
        make_config(fill_mode="mirror")
