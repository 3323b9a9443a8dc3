"""Keras' ImageDataGenerator vocabulary as one batched op: sample parameters per image, then a pure function.

The knobs keep their Keras meaning (see :class:`AugmentConfig`), and the draws are Keras' own
(``ImageDataGenerator.get_random_transform``): an angle and a shear ~ U(-r, r); a float shift range ~ U(-r, r)
(a fraction of the side if < 1, else pixels); an *integer* shift range N draws a whole number of pixels in
0 .. N-1 and a random sign (so 2 gives -1, 0 or 1, with 0 half the time); a list draws one of its values and a
random sign; x and y zoom drawn independently from [lo, hi]; flips with probability 1/2.

Geometry is Keras' too: one matrix per image, ``R(angle) @ T(shift) @ Shear(shear) @ Zoom(zx, zy)`` mapping each
output pixel to the input point it samples, about the image centre. So a shift is applied before zoom and shear
act (a 3-pixel shift at zoom 0.8 moves the image 3.75 pixels), the shear keeps horizontal lines horizontal, tilts
vertical lines (bottom to the right for a positive angle: column offset = sin(shear) * row offset) and stretches
row spacing by 1 / cos(shear), and a zoom factor < 1 zooms in. The whole batch is sampled in one ``grid_sample``
pass, with all four Keras fill modes:

- ``nearest``: edge pixels repeat (``grid_sample`` ``border``);
- ``reflect``: mirror about the image edge, ``d c b a | a b c d | d c b a`` (SciPy ``reflect``;
  ``grid_sample`` ``reflection`` with ``align_corners=False``);
- ``wrap``: the image tiles with period ``n`` (SciPy ``grid-wrap``). ``grid_sample`` has no wrap: source
  coordinates are taken modulo ``n`` and the image is padded circularly by one pixel so that bilinear
  neighbours across the seam exist.
- ``constant``: ``cval`` outside. ``grid_sample`` pads with zeros only; bilinear sampling is linear, so
  sampling ``x - cval`` with zeros and adding ``cval`` back is sampling ``x`` with ``cval`` padding.

Where optik differs from Keras 3 by default (``keras_compat=True`` reproduces Keras exactly, these included):

1. Keras' shifts act on swapped axes: ``height_shift_range``, scaled by the height, moves the image sideways, and
   ``width_shift_range`` moves it up and down. optik shifts along the axis the knob names.
2. Keras rotates, shears and zooms a non-square image about a wrong centre (its row and column centres are
   swapped). optik uses the image centre.
3. Keras' ``wrap`` goes through SciPy's old ``wrap``, which repeats with period ``n - 1``; optik's with ``n``.
4. Keras treats a list of shifts as fractions of the side when its largest value is < 1 (so ``[-4, -2]`` means
   fractions); optik when every value lies in (-1, 1).
5. Keras' ``constant`` goes through SciPy's old ``constant``: any point sampled beyond the outermost pixel
   centres is ``cval``. optik's pads the image with ``cval`` and interpolates (SciPy ``grid-constant``), so the
   border pixels blend into ``cval`` over one pixel instead of being cut.

Parameters follow Keras' ``transform_parameters``: ``dy`` and ``dx`` are its ``tx`` and ``ty`` (the vertical and
horizontal shift of the sampled point; the image moves the other way), ``zy`` / ``zx`` its ``zy`` / ``zx``.
Draws come from an explicit torch generator, not NumPy's global one: the same distributions, other numbers.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import torch
import torch.nn.functional as F

from optik.core import seed as random
from optik.core.errors import ConfigError, short

FILL_MODES = ("nearest", "reflect", "wrap", "constant")
GEOMETRIC = ("rotation", "shift", "shear", "zoom")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """The ImageDataGenerator knobs, with Keras' meaning.

    Attributes:
        rotation_range: degrees; angle ~ U(-r, r), positive = counter-clockwise on screen.
        width_shift_range, height_shift_range: a float ``r`` < 1 is a fraction of the width / height, >= 1 pixels;
            the shift ~ U(-r, r). An int ``N`` draws whole pixels ``k`` in ``0 .. N-1`` times a random sign.
            A sequence draws one of its values times a random sign (fractions if every value is in (-1, 1)).
        shear_range: degrees; shear angle ~ U(-r, r): horizontal lines stay horizontal, vertical lines tilt
            (bottom to the right for a positive angle), row spacing stretches by 1 / cos(angle) (Keras).
        zoom_range: ``z`` -> [1 - z, 1 + z], or a pair ``(lo, hi)``; x and y zoom drawn independently.
            As in Keras, the factor scales the sampled field of view: < 1 zooms in, > 1 zooms out.
        brightness_range: ``(lo, hi)``; pixels are multiplied by U(lo, hi).
        channel_shift_range: one offset ~ U(-r, r) per image, added to every channel, then clipped to the
            image's own [min, max] (Keras); in the units of the input (255 for uint8-range input).
        horizontal_flip, vertical_flip: flip with probability 1/2.
        rescale: multiply every pixel by this at the end (e.g. 1/255 for 0..255 input); None = no change.
        fill_mode: nearest | reflect | wrap | constant; ``cval`` the constant.
        p: probability that each geometric op (rotation, shift, shear, zoom) is applied to an image (optik's).
        keras_compat: reproduce Keras' geometry bugs too (the five differences in the module docstring).
    """

    rotation_range: float = 0.0
    width_shift_range: int | float | Sequence[float] = 0.0
    height_shift_range: int | float | Sequence[float] = 0.0
    shear_range: float = 0.0
    zoom_range: float | Sequence[float] = 0.0
    brightness_range: Sequence[float] | None = None
    channel_shift_range: float = 0.0
    horizontal_flip: bool = False
    vertical_flip: bool = False
    rescale: float | None = None
    fill_mode: str = "nearest"
    cval: float = 0.0
    p: float = 1.0
    keras_compat: bool = False

    def __post_init__(self) -> None:
        for name in ("rotation_range", "shear_range", "channel_shift_range", "cval", "p", "zoom_range",
                     "brightness_range", "rescale"):
            value = getattr(self, name)
            values = list(value) if isinstance(value, (list, tuple)) else [] if value is None else [value]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values):
                raise ConfigError(f"{name}: expected finite numbers, got {short(value)}")
        if self.fill_mode not in FILL_MODES:
            raise ConfigError(f"fill_mode: expected one of {', '.join(FILL_MODES)}, got {short(self.fill_mode)}")
        for name in ("rotation_range", "shear_range", "channel_shift_range"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: expected a value >= 0 (a range -v..v), got {short(getattr(self, name))}")
        if not 0 <= self.p <= 1:
            raise ConfigError(f"p: expected a probability in [0, 1], got {short(self.p)}")
        for name in ("width_shift_range", "height_shift_range"):
            spec = getattr(self, name)
            values = list(spec) if isinstance(spec, (list, tuple)) else [spec]
            numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
            if not values or not numbers or (not isinstance(spec, (list, tuple)) and spec < 0):
                raise ConfigError(f"{name}: expected a number >= 0 (a float: fraction or pixels; an integer: whole "
                                  f"pixels) or a non-empty list of numbers, got {short(spec)}")
        lo, hi = self.zoom_bounds
        if isinstance(self.zoom_range, (int, float)) and not 0 <= self.zoom_range < 1:
            raise ConfigError(f"zoom_range: expected a float z in [0, 1) (zoom between 1 - z and 1 + z) or a pair "
                              f"(lo, hi), got {short(self.zoom_range)}")
        if not 0 < lo <= hi:
            raise ConfigError(f"zoom_range: expected a pair (lo, hi) with 0 < lo <= hi, got {short(self.zoom_range)}")
        if self.brightness_range is not None and (not isinstance(self.brightness_range, (list, tuple))
                                                  or len(self.brightness_range) != 2):
            raise ConfigError(f"brightness_range: expected a pair (lo, hi), got {short(self.brightness_range)}")

    @property
    def zoom_bounds(self) -> tuple[float, float]:
        z = self.zoom_range
        if isinstance(z, (int, float)):
            return 1 - z, 1 + z
        if len(z) != 2:
            raise ConfigError(f"zoom_range: expected a float or a pair (lo, hi), got {short(z)}")
        return float(z[0]), float(z[1])


def _shift_pixels(spec, n: int, size: int, g: torch.Generator, *, keras_compat: bool = False) -> torch.Tensor:
    """Shifts in pixels (float32) for ``n`` images along an axis of ``size`` pixels, drawn as Keras draws them from
    a shift range (see :class:`AugmentConfig`); computed in float64, as NumPy does in Keras."""
    if isinstance(spec, bool):
        raise ConfigError(f"expected a shift range as a number or a list of numbers, got {spec!r}")
    if isinstance(spec, int):  # Keras: np.random.choice(N) * np.random.choice([-1, 1])
        magnitude = random.randint(spec, (n,), generator=g).double() if spec > 0 else torch.zeros(n, dtype=torch.float64)
        return (magnitude * _random_sign(n, g)).float()
    if isinstance(spec, float):
        r = spec * size if abs(spec) < 1 else spec
        return (random.uniform((n,), generator=g) * 2 - 1) * r
    choices = torch.tensor([float(c) for c in spec], dtype=torch.float64)
    fractions = bool(choices.max() < 1) if keras_compat else bool((choices.abs() < 1).all())
    picked = choices[random.randint(len(choices), (n,), generator=g)] * _random_sign(n, g)
    return (picked * size if fractions else picked).float()


def _random_sign(n: int, g: torch.Generator) -> torch.Tensor:
    return random.randint(2, (n,), generator=g).double() * 2 - 1


def sample_params(cfg: AugmentConfig, n: int, size: tuple[int, int], *, generator: torch.Generator) -> dict:
    """Per-image parameters for ``n`` images of ``size = (H, W)``, drawn on the generator's device and returned on
    the CPU (a CPU generator gives the same draws whatever device the images are on).

    Returns a dict of ``n``-long tensors: ``angle`` (deg), ``dy``/``dx`` (px), ``shear`` (deg), ``zy``/``zx``,
    ``flip_h``/``flip_v`` (bool), ``brightness``, ``channel_shift``. Pass it to :func:`apply` to replay.
    """
    g, (h, w) = generator, size
    rand = lambda: random.uniform((n,), generator=g, device="cpu")  # noqa: E731 - U(0, 1)
    u = lambda: rand() * 2 - 1  # noqa: E731 - U(-1, 1)
    lo, hi = cfg.zoom_bounds
    params = {
        "angle": u() * cfg.rotation_range,
        "dy": _shift_pixels(cfg.height_shift_range, n, h, g, keras_compat=cfg.keras_compat).cpu(),
        "dx": _shift_pixels(cfg.width_shift_range, n, w, g, keras_compat=cfg.keras_compat).cpu(),
        "shear": u() * cfg.shear_range,
        "zy": lo + rand() * (hi - lo),
        "zx": lo + rand() * (hi - lo),
        "flip_h": (rand() < 0.5) & cfg.horizontal_flip,
        "flip_v": (rand() < 0.5) & cfg.vertical_flip,
        "brightness": (random.uniform((n,), *cfg.brightness_range, generator=g, device="cpu")
                       if cfg.brightness_range is not None else torch.ones(n)),
        "channel_shift": u() * cfg.channel_shift_range,
    }
    if cfg.p < 1:  # each geometric op on its own coin per image; a skipped op gets its identity value
        identity = {"angle": 0.0, "dy": 0.0, "dx": 0.0, "shear": 0.0, "zy": 1.0, "zx": 1.0}
        for op, keys in {"rotation": ("angle",), "shift": ("dy", "dx"), "shear": ("shear",),
                         "zoom": ("zy", "zx")}.items():
            skip = rand() >= cfg.p
            for k in keys:
                params[k] = torch.where(skip, torch.full_like(params[k], identity[k]), params[k])
    return params


def matrices(params: dict, size: tuple[int, int], *, keras_compat: bool = False) -> torch.Tensor:
    """``N x 2 x 3``: for each output pixel ``(row, col)`` the input pixel it samples, in pixel units.

    Keras' ``apply_affine_transform``: in ``(x, y) = (column, row)`` coordinates, ``R @ T @ Shear @ Zoom`` about
    the image centre, then the axes swapped into ``(row, col)`` order for SciPy. ``keras_compat`` keeps Keras'
    two axis bugs: its vertical shift ``tx`` (``params["dy"]``) applied along x, and the row and column centres
    swapped (the same thing for square images).
    """
    h, w = size
    a, s = torch.deg2rad(params["angle"].double()), torch.deg2rad(params["shear"].double())
    n = len(a)
    one, zero = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)

    def mat(*rows):
        return torch.stack([torch.stack(r, 1) for r in rows], 1)  # N x 3 x 3

    dy, dx = params["dy"].double(), params["dx"].double()
    tx, ty = (dy, dx) if keras_compat else (dx, dy)  # x is the column axis
    rot = mat((torch.cos(a), -torch.sin(a), zero), (torch.sin(a), torch.cos(a), zero), (zero, zero, one))
    shift = mat((one, zero, tx), (zero, one, ty), (zero, zero, one))
    shear = mat((one, -torch.sin(s), zero), (zero, torch.cos(s), zero), (zero, zero, one))
    zoom = mat((params["zx"].double(), zero, zero), (zero, params["zy"].double(), zero), (zero, zero, one))
    cx, cy = (h / 2 - 0.5, w / 2 - 0.5) if keras_compat else ((w - 1) / 2, (h - 1) / 2)
    offset = torch.tensor([[1, 0, cx], [0, 1, cy], [0, 0, 1]], dtype=torch.float64)
    reset = torch.tensor([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]], dtype=torch.float64)
    m = offset @ (rot @ shift @ shear @ zoom) @ reset
    m = m[:, :, [1, 0, 2]][:, [1, 0, 2], :]  # (x, y) -> (row, col): P M P with P the swap
    return m[:, :2, :]


def _with_flips(m: torch.Tensor, params: dict, size: tuple[int, int]) -> torch.Tensor:
    """Fold the flips into the matrices: a flipped output pixel samples where its mirror image would."""
    h, w = size
    m = m.clone()
    for key, axis, n in (("flip_v", 0, h), ("flip_h", 1, w)):
        f = params[key].bool()
        if f.any():  # (r, c) -> (n - 1 - r, c) or (r, n - 1 - c) before m
            m[f, :, 2] += m[f, :, axis] * (n - 1)
            m[f, :, axis] = -m[f, :, axis]
    return m


def _sample(x: torch.Tensor, m: torch.Tensor, fill_mode: str, cval: float, *, legacy_scipy: bool = False
            ) -> torch.Tensor:
    """Bilinear sampling of ``x`` at ``m @ (row, col, 1)`` for every output pixel, with the fill mode.

    The grid is built separably (``a * row + (b * col + c)`` per coordinate): ``F.affine_grid`` costs twice
    ``grid_sample`` itself on the CPU. ``legacy_scipy`` copies SciPy's older modes that Keras uses: ``wrap``
    with period ``n - 1``, and ``constant`` returning ``cval`` for any source point outside ``[0, n - 1]``.
    """
    n, c, h, w = x.shape
    m = m.to(device=x.device, dtype=torch.float64)
    rows = torch.arange(h, device=x.device, dtype=torch.float64).view(1, h, 1)
    cols = torch.arange(w, device=x.device, dtype=torch.float64).view(1, 1, w)
    wrap = fill_mode == "wrap"
    legacy_constant = fill_mode == "constant" and legacy_scipy
    if wrap or legacy_constant:  # these need source coordinates in pixels
        src_r = (m[:, 0, 0].view(n, 1, 1) * rows + (m[:, 0, 1].view(n, 1, 1) * cols + m[:, 0, 2].view(n, 1, 1)))
        src_c = (m[:, 1, 0].view(n, 1, 1) * rows + (m[:, 1, 1].view(n, 1, 1) * cols + m[:, 1, 2].view(n, 1, 1)))
        outside = None
        if legacy_constant:
            outside = (src_r < 0) | (src_r > h - 1) | (src_c < 0) | (src_c > w - 1)
        elif legacy_scipy:  # SciPy's legacy wrap: period n - 1, neighbours always inside the image
            src_r, src_c = torch.remainder(src_r, h - 1), torch.remainder(src_c, w - 1)
        else:  # period n: take coordinates modulo n and pad one pixel circularly for the seam's neighbours
            src_r, src_c = torch.remainder(src_r, h) + 1, torch.remainder(src_c, w) + 1
            x, (h, w) = F.pad(x, (1, 1, 1, 1), mode="circular"), (h + 2, w + 2)
        # pixel centres -> grid_sample's normalized coordinates (align_corners=False): (2p + 1) / n - 1
        grid = torch.stack([(2 * src_c + 1) / w - 1, (2 * src_r + 1) / h - 1], -1).to(x.dtype)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out if outside is None else out.masked_fill_(outside.unsqueeze(1), cval)
    # normalized coordinates straight from output pixel indices: g = A * row + B * col + C
    grid = torch.empty(n, h, w, 2, device=x.device, dtype=x.dtype)
    for k, (i, size) in enumerate(((1, w), (0, h))):  # grid[..., 0] is x (columns), grid[..., 1] is y (rows)
        a, b, c0 = (2 * m[:, i, 0] / size), (2 * m[:, i, 1] / size), ((2 * m[:, i, 2] + 1) / size - 1)
        grid[..., k] = (a.view(n, 1, 1) * rows).to(x.dtype) + (b.view(n, 1, 1) * cols + c0.view(n, 1, 1)).to(x.dtype)
    pad_mode = {"nearest": "border", "reflect": "reflection", "constant": "zeros"}[fill_mode]
    if fill_mode == "constant" and cval != 0:  # bilinear is linear: sample(x - cval) with zeros, + cval
        return F.grid_sample(x - cval, grid, mode="bilinear", padding_mode="zeros", align_corners=False).add_(cval)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=pad_mode, align_corners=False)


def apply(x: torch.Tensor, params: dict, cfg: AugmentConfig) -> torch.Tensor:
    """Apply sampled ``params`` to a batch ``N x C x H x W`` (float, any range; ``rescale`` comes last).

    One sampling pass for the whole geometry (flips folded into the matrices), then at most two
    elementwise passes (channel shift; brightness times rescale).
    """
    n, _, h, w = x.shape
    dev = x.device
    geometric = any(bool(params[k].abs().max() > 0) for k in ("angle", "dy", "dx", "shear")) or \
        any(bool((params[k] - 1).abs().max() > 0) for k in ("zy", "zx"))
    if geometric:
        m = matrices(params, (h, w), keras_compat=cfg.keras_compat)
        x = _sample(x, _with_flips(m, params, (h, w)), cfg.fill_mode, cfg.cval, legacy_scipy=cfg.keras_compat)
    else:  # flips alone stay exact
        if params["flip_h"].any():
            x = torch.where(params["flip_h"].to(dev).view(n, 1, 1, 1), x.flip(3), x)
        if params["flip_v"].any():
            x = torch.where(params["flip_v"].to(dev).view(n, 1, 1, 1), x.flip(2), x)
    if cfg.channel_shift_range:
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        x = torch.maximum(torch.minimum(x + params["channel_shift"].to(dev, x.dtype).view(n, 1, 1, 1), hi), lo)
    scale = params["brightness"] if cfg.brightness_range is not None else None
    if cfg.rescale is not None:
        scale = (scale if scale is not None else torch.ones(n)) * cfg.rescale
    if scale is not None:
        scale = scale.to(dev, x.dtype).view(n, 1, 1, 1)
        x = x.mul_(scale) if geometric or cfg.channel_shift_range else x * scale  # never write into the input
    return x


def augment(x: torch.Tensor, cfg: AugmentConfig, *, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """Sample parameters for the batch and apply them; returns the images and the parameters (to replay)."""
    params = sample_params(cfg, len(x), tuple(x.shape[2:]), generator=generator)
    return apply(x, params, cfg), params


__all__ = ["AugmentConfig", "FILL_MODES", "apply", "augment", "matrices", "sample_params"]
