"""Batched integer shifts against SciPy, per image, with zero fill."""
import numpy as np
import torch
from scipy import ndimage

from optik.augment import random_shift, shift
from optik.core.seed import generator


def test_shift_matches_scipy_per_image():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((6, 3, 9, 11)).astype(np.float32))
    dy = torch.tensor([0, 1, -2, 3, -1, 2])
    dx = torch.tensor([0, -3, 2, 1, 0, -2])
    out = shift(x, dy, dx).numpy()
    for i in range(6):
        ref = ndimage.shift(x[i].numpy(), (0, int(dy[i]), int(dx[i])), order=0, mode="constant", cval=0.0)
        np.testing.assert_array_equal(out[i], ref)


def test_random_shift_is_seeded_and_bounded():
    x = torch.zeros(50, 1, 7, 7)
    x[:, :, 3, 3] = 1.0  # one bright pixel in the centre of every image
    a = random_shift(x, 2, generator=generator(0, "t"))
    b = random_shift(x, 2, generator=generator(0, "t"))
    assert torch.equal(a, b)
    pos = a[:, 0].flatten(1).argmax(1)
    rows, cols = pos // 7, pos % 7
    assert rows.min() >= 1 and rows.max() <= 5 and cols.min() >= 1 and cols.max() <= 5
    assert len(set(zip(rows.tolist(), cols.tolist()))) > 10  # offsets differ per image
    assert torch.equal(random_shift(x, 0, generator=generator(0, "t")), x)


def _scipy_affine(img, angle_deg, scale, dy, dx):
    """Reference: rotate counter-clockwise on screen and scale about the centre, then shift, bilinear, zero fill."""
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])  # on (row, col), rows pointing down
    inv = np.linalg.inv(rot * scale)
    centre = (np.array(img.shape) - 1) / 2
    return ndimage.affine_transform(img, inv, offset=centre - inv @ (centre + np.array([dy, dx])), order=1,
                                    mode="constant", cval=0.0)


def test_affine_matches_scipy_away_from_borders():
    import torch.nn.functional as F

    from optik.augment import affine_matrices

    rng = np.random.default_rng(1)
    imgs = rng.random((4, 31, 41)).astype(np.float32)
    params = [(20.0, 1.2, 2, -3), (-35.0, 0.9, 0, 0), (90.0, 1.0, -1, 4), (0.0, 1.1, 3, 3)]
    angle, scale, dy, dx = (torch.tensor(v) for v in zip(*params))
    theta = affine_matrices(angle, scale.float(), dy, dx, (31, 41))
    x = torch.from_numpy(imgs)[:, None]
    out = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
    for i, p in enumerate(params):
        ref = _scipy_affine(imgs[i], *p)
        # "away from borders": output pixels whose whole bilinear neighbourhood lies inside the input
        inside = ndimage.binary_erosion(_scipy_affine(np.ones_like(imgs[i]), *p) > 1 - 1e-6, iterations=2)
        assert inside.sum() > 300
        err = np.abs(out[i, 0].numpy() - ref)[inside]
        assert err.mean() <= 0.5 / 255 and err.max() < 1e-4


def test_random_affine_seeded_and_identity_when_off():
    from optik.augment import random_affine

    x = torch.rand(8, 3, 16, 16)
    a = random_affine(x, rotation_deg=15, zoom=0.1, shift_px=2, generator=generator(1, "a"))
    b = random_affine(x, rotation_deg=15, zoom=0.1, shift_px=2, generator=generator(1, "a"))
    assert torch.equal(a, b) and not torch.equal(a, x)
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(random_affine(x, rotation_deg=0, zoom=0, shift_px=0, generator=generator(1, "a")), x)
