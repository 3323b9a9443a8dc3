"""Keras' ImageDataGenerator vocabulary as one batched op: sample parameters per image, then a pure function.

The knobs keep their Keras meaning (see :class:`AugmentConfig`). Geometry is one affine matrix per image and
one ``grid_sample`` pass over the whole batch, with all four Keras fill modes:

- ``nearest``: edge pixels repeat (``grid_sample`` ``border``);
- ``reflect``: mirror about the image edge, ``d c b a | a b c d | d c b a`` (SciPy ``reflect``;
  ``grid_sample`` ``reflection`` with ``align_corners=False``);
- ``wrap``: the image tiles with period ``n`` (SciPy ``grid-wrap``). ``grid_sample`` has no wrap: source
  coordinates are taken modulo ``n`` and the image is padded circularly by one pixel so that bilinear
  neighbours across the seam exist. (Keras' ``wrap`` goes through SciPy's old ``wrap``, period ``n - 1``.)
- ``constant``: ``cval`` outside. ``grid_sample`` pads with zeros only; bilinear sampling is linear, so
  sampling ``x - cval`` with zeros and adding ``cval`` back is sampling ``x`` with ``cval`` padding.

``keras_compat=True`` reproduces Keras 3's ``ImageDataGenerator`` geometry exactly, bugs included: its shifts
act on swapped axes (``height_shift_range``, scaled by the height, moves the image sideways) and its ``wrap``
has period ``n - 1``. By default optik does what the knobs say.

Work in progress for issue #3: presets, the preview grid and `optik train` integration are not built yet.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import torch
import torch.nn.functional as F

from optik.core.errors import ConfigError

FILL_MODES = ("nearest", "reflect", "wrap", "constant")
GEOMETRIC = ("rotation", "shift", "shear", "zoom")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """The ImageDataGenerator knobs, with Keras' meaning.

    Attributes:
        rotation_range: degrees; angle ~ U(-r, r), positive = counter-clockwise on screen.
        width_shift_range, height_shift_range: a float < 1 is a fraction of the width / height, >= 1 pixels,
            shift ~ U(-r, r); a sequence is a set of choices (fractions if all < 1, else pixels).
        shear_range: degrees; shear angle ~ U(-r, r): horizontal lines stay horizontal, vertical lines tilt
            counter-clockwise by the angle (their top moves left).
        zoom_range: ``z`` -> [1 - z, 1 + z], or a pair ``(lo, hi)``; x and y zoom drawn independently.
            As in Keras, the factor scales the sampled field of view: < 1 zooms in, > 1 zooms out.
        brightness_range: ``(lo, hi)``; pixels are multiplied by U(lo, hi).
        channel_shift_range: one offset ~ U(-r, r) per image, added to every channel, then clipped to the
            image's own [min, max] (Keras); in the units of the input (255 for uint8-range input).
        horizontal_flip, vertical_flip: flip with probability 1/2.
        rescale: multiply every pixel by this at the end (e.g. 1/255 for 0..255 input); None = no change.
        fill_mode: nearest | reflect | wrap | constant; ``cval`` the constant.
        p: probability that each geometric op (rotation, shift, shear, zoom) is applied to an image.
        keras_compat: reproduce Keras' geometry bugs (swapped shift axes, period ``n - 1`` wrap).
    """

    rotation_range: float = 0.0
    width_shift_range: float | Sequence[float] = 0.0
    height_shift_range: float | Sequence[float] = 0.0
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
        if self.fill_mode not in FILL_MODES:
            raise ConfigError(f"fill_mode: expected one of {', '.join(FILL_MODES)}, got {self.fill_mode!r}")
        for name in ("rotation_range", "shear_range", "channel_shift_range"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name}: expected a value >= 0 (a range -v..v), got {getattr(self, name)}")
        if not 0 <= self.p <= 1:
            raise ConfigError(f"p: expected a probability in [0, 1], got {self.p}")
        lo, hi = self.zoom_bounds
        if isinstance(self.zoom_range, (int, float)) and not 0 <= self.zoom_range < 1:
            raise ConfigError(f"zoom_range: expected a float z in [0, 1) (zoom between 1 - z and 1 + z) or a pair "
                              f"(lo, hi), got {self.zoom_range!r}")
        if not 0 < lo <= hi:
            raise ConfigError(f"zoom_range: expected a pair (lo, hi) with 0 < lo <= hi, got {self.zoom_range!r}")
        if self.brightness_range is not None and len(self.brightness_range) != 2:
            raise ConfigError(f"brightness_range: expected a pair (lo, hi), got {self.brightness_range!r}")

    @property
    def zoom_bounds(self) -> tuple[float, float]:
        z = self.zoom_range
        if isinstance(z, (int, float)):
            return 1 - z, 1 + z
        if len(z) != 2:
            raise ConfigError(f"zoom_range: expected a float or a pair (lo, hi), got {z!r}")
        return float(z[0]), float(z[1])


def _shift_pixels(spec, n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """Shifts in pixels for ``n`` images along an axis of ``size`` pixels, from a Keras shift range."""
    if isinstance(spec, (int, float)):
        r = spec * size if abs(spec) < 1 else spec
        return (torch.rand(n, generator=g) * 2 - 1) * r
    choices = torch.tensor([float(c) for c in spec])
    if (choices.abs() < 1).all():
        choices = choices * size
    return choices[torch.randint(len(choices), (n,), generator=g)]


def sample_params(cfg: AugmentConfig, n: int, size: tuple[int, int], *, generator: torch.Generator) -> dict:
    """Per-image parameters for ``n`` images of ``size = (H, W)``, drawn on the CPU (device-independent).

    Returns a dict of ``n``-long tensors: ``angle`` (deg), ``dy``/``dx`` (px), ``shear`` (deg), ``zy``/``zx``,
    ``flip_h``/``flip_v`` (bool), ``brightness``, ``channel_shift``. Pass it to :func:`apply` to replay.
    """
    g, (h, w) = generator, size
    u = lambda: torch.rand(n, generator=g) * 2 - 1  # noqa: E731 - U(-1, 1)
    lo, hi = cfg.zoom_bounds
    params = {
        "angle": u() * cfg.rotation_range,
        "dy": _shift_pixels(cfg.height_shift_range, n, h, g),
        "dx": _shift_pixels(cfg.width_shift_range, n, w, g),
        "shear": u() * cfg.shear_range,
        "zy": lo + torch.rand(n, generator=g) * (hi - lo),
        "zx": lo + torch.rand(n, generator=g) * (hi - lo),
        "flip_h": (torch.rand(n, generator=g) < 0.5) & cfg.horizontal_flip,
        "flip_v": (torch.rand(n, generator=g) < 0.5) & cfg.vertical_flip,
        "brightness": (torch.empty(n).uniform_(*cfg.brightness_range, generator=g)
                       if cfg.brightness_range is not None else torch.ones(n)),
        "channel_shift": u() * cfg.channel_shift_range,
    }
    if cfg.p < 1:  # each geometric op on its own coin per image; a skipped op gets its identity value
        identity = {"angle": 0.0, "dy": 0.0, "dx": 0.0, "shear": 0.0, "zy": 1.0, "zx": 1.0}
        for op, keys in {"rotation": ("angle",), "shift": ("dy", "dx"), "shear": ("shear",),
                         "zoom": ("zy", "zx")}.items():
            skip = torch.rand(n, generator=g) >= cfg.p
            for k in keys:
                params[k] = torch.where(skip, torch.full_like(params[k], identity[k]), params[k])
    return params


def matrices(params: dict, size: tuple[int, int]) -> torch.Tensor:
    """``N x 2 x 3``: for each output pixel ``(row, col)`` the input pixel it samples, in pixel units.

    Forward map (input -> output) about the image centre: zoom, then shear, then rotation, then shift;
    flips are applied to the output afterwards. Rows point down, so "counter-clockwise" is on screen.
    """
    h, w = size
    a, s = torch.deg2rad(params["angle"].double()), torch.deg2rad(params["shear"].double())
    n = len(a)
    # forward linear map on (row, col): R(a) @ Shear(s) @ diag(1/zy, 1/zx) (Keras: zoom < 1 enlarges)
    rot = torch.stack([torch.cos(a), -torch.sin(a), torch.sin(a), torch.cos(a)], 1).view(n, 2, 2)
    # shear: (r, c) -> (r cos s, c + r sin s): horizontal lines stay, vertical lines tilt by s (top to the left)
    shear = torch.stack([torch.cos(s), torch.zeros(n, dtype=s.dtype), torch.sin(s), torch.ones(n, dtype=s.dtype)],
                        1).view(n, 2, 2)
    zoom = torch.diag_embed(torch.stack([1 / params["zy"].double(), 1 / params["zx"].double()], 1))
    inverse = torch.linalg.inv(rot @ shear @ zoom)  # output offset -> input offset
    centre = torch.tensor([(h - 1) / 2, (w - 1) / 2], dtype=torch.float64)
    shift = torch.stack([params["dy"].double(), params["dx"].double()], 1)
    offset = centre - (inverse @ (centre + shift).unsqueeze(2)).squeeze(2)
    return torch.cat([inverse, offset.unsqueeze(2)], dim=2)


def keras_matrices(params: dict, size: tuple[int, int]) -> torch.Tensor:
    """The matrices Keras 3's ``apply_affine_transform`` passes to SciPy, for the same parameters.

    Keras builds ``R @ T @ Shear @ Zoom`` with ``T = [[1, 0, tx], [0, 1, ty]]``, centres it with ``(h, w)``, then
    swaps the two axes (``P M P``). Here ``tx = params["dy"]`` (drawn from ``height_shift_range``) and
    ``ty = params["dx"]``, so after the swap the "height" shift moves the image sideways, as in Keras.
    """
    h, w = size
    a, s = torch.deg2rad(params["angle"].double()), torch.deg2rad(params["shear"].double())
    n = len(a)
    one, zero = torch.ones(n, dtype=torch.float64), torch.zeros(n, dtype=torch.float64)

    def mat(*rows):
        return torch.stack([torch.stack(r, 1) for r in rows], 1)  # N x 3 x 3

    rot = mat((torch.cos(a), -torch.sin(a), zero), (torch.sin(a), torch.cos(a), zero), (zero, zero, one))
    shift = mat((one, zero, params["dy"].double()), (zero, one, params["dx"].double()), (zero, zero, one))
    shear = mat((one, -torch.sin(s), zero), (zero, torch.cos(s), zero), (zero, zero, one))
    zoom = mat((params["zx"].double(), zero, zero), (zero, params["zy"].double(), zero), (zero, zero, one))
    ox, oy = h / 2 - 0.5, w / 2 - 0.5
    offset = torch.tensor([[1, 0, ox], [0, 1, oy], [0, 0, 1]], dtype=torch.float64)
    reset = torch.tensor([[1, 0, -ox], [0, 1, -oy], [0, 0, 1]], dtype=torch.float64)
    m = offset @ (rot @ shift @ shear @ zoom) @ reset
    m = m[:, :, [1, 0, 2]][:, [1, 0, 2], :]  # Keras' swap of the two axes (channels-last images)
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
        m = keras_matrices(params, (h, w)) if cfg.keras_compat else matrices(params, (h, w))
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


__all__ = ["AugmentConfig", "FILL_MODES", "apply", "augment", "keras_matrices", "matrices", "sample_params"]
