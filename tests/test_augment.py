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
