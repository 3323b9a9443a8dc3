"""DCGAN generator and discriminator, and a convolutional VAE, sized from the image shape.

Architecture only: no losses, no devices. The one piece of sampling here is the VAE's learned
:class:`MixturePrior`, whose parameters belong to the model (the N(0, I) prior's codes are drawn in
``optik.generative.models``). Images are ``N x C x H x W`` float in [0, 1] on both sides (the networks map to
and from [-1, 1] inside, as DCGAN does).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _sn

from optik.core import seed as random
from optik.core.errors import ConfigError

_LOG_2PI = math.log(2 * math.pi)


def upsampling_stages(image_size: Sequence[int]) -> tuple[int, tuple[int, int]]:
    """How many 2x up-/down-sampling stages fit ``image_size``, and the base map size they start from.

    Halve while both sides stay even and at least 4 after halving: 28 -> 7 (2 stages), 32 -> 4 (3), 64 -> 4 (4).
    """
    h, w = (int(s) for s in image_size)
    if min(h, w) < 8:
        raise ConfigError(f"expected images of at least 8 x 8 pixels for a DCGAN / VAE, got {h} x {w}")
    k = 0
    while h % 2 == 0 and w % 2 == 0 and min(h, w) // 2 >= 4:
        h, w, k = h // 2, w // 2, k + 1
    if k == 0:
        raise ConfigError(f"expected an image size divisible by 2 (e.g. 28 or 32), got {image_size[0]} x "
                          f"{image_size[1]}; resize the data with --image-size")
    return k, (h, w)


def _widths(width: int, stages: int) -> list[int]:
    """Channels from the base map outwards: ``width * 2**(stages-1) ... width`` (capped at 8x)."""
    return [width * min(2 ** (stages - 1 - i), 8) for i in range(stages)]


class Generator(nn.Module):
    """DCGAN generator (Radford et al. 2016, https://arxiv.org/abs/1511.06434): a linear projection of the
    latent code to the base map, then 2x transposed convolutions with BatchNorm and ReLU.

    Args:
        latent_dim: size of the code ``z``.
        channels: image channels (1 or 3).
        image_size: ``(H, W)``; sets the number of stages (see :func:`upsampling_stages`).
        width: channels of the last hidden stage; earlier stages have 2x, 4x, ... (at most 8x).
        num_classes: > 0 makes it class-conditional: a learned class embedding is concatenated to ``z``.

    Shape:
        ``z``: ``N x latent_dim``; ``y``: ``N`` labels (conditional only). Output ``N x C x H x W`` in [0, 1]
        (``(tanh(a) + 1) / 2``, i.e. the paper's tanh output mapped to pixels).
    """

    def __init__(self, *, latent_dim: int, channels: int, image_size: Sequence[int], width: int = 64,
                 num_classes: int = 0):
        super().__init__()
        stages, (h, w) = upsampling_stages(image_size)
        widths = _widths(width, stages)
        self.latent_dim, self.num_classes, self.base = latent_dim, num_classes, (widths[0], h, w)
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        code = latent_dim * (2 if num_classes else 1)
        self.project = nn.Sequential(nn.Linear(code, widths[0] * h * w, bias=False),
                                     nn.Unflatten(1, self.base), nn.BatchNorm2d(widths[0]), nn.ReLU(True))
        blocks = []
        for c_in, c_out in zip(widths, widths[1:]):
            blocks += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(True)]
        blocks.append(nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1))
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if y is None:
                raise ValueError("expected class labels y for a class-conditional generator, got None")
            z = torch.cat([z, self.embed(y)], 1)
        return torch.tanh(self.blocks(self.project(z))).add(1).mul(0.5)


class Discriminator(nn.Module):
    """DCGAN discriminator: 2x strided 4x4 convolutions with LeakyReLU(0.2), then one logit.

    Args:
        channels, image_size, width: as the :class:`Generator` (the same stage count, mirrored).
        norm: ``"bn"`` (DCGAN's BatchNorm after every conv but the first), ``"sn"`` (spectral norm on every
            layer, Miyato et al. 2018, https://arxiv.org/abs/1802.05957) or ``"none"`` (use with the R1 penalty).
        num_classes: > 0 adds a projection term ``<embed(y), h>`` (Miyato & Koyama 2018,
            https://arxiv.org/abs/1802.05637) for a class-conditional GAN.

    Shape:
        input ``N x C x H x W`` in [0, 1]; output ``N`` raw logits (real > 0).
    """

    def __init__(self, *, channels: int, image_size: Sequence[int], width: int = 64, norm: str = "bn",
                 num_classes: int = 0):
        super().__init__()
        if norm not in ("bn", "sn", "none"):
            raise ConfigError(f"expected discriminator norm bn, sn or none, got {norm!r}")
        stages, (h, w) = upsampling_stages(image_size)
        widths = _widths(width, stages)[::-1]
        wrap = _sn if norm == "sn" else (lambda m: m)
        layers, c_in = [], channels
        for i, c_out in enumerate(widths):
            layers.append(wrap(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=norm != "bn" or i == 0)))
            if norm == "bn" and i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.LeakyReLU(0.2, True))
            c_in = c_out
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.head = wrap(nn.Linear(c_in * h * w, 1))
        self.embed = wrap(nn.Embedding(num_classes, c_in * h * w)) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x * 2 - 1)
        out = self.head(h).squeeze(1)
        if self.embed is not None:
            if y is None:
                raise ValueError("expected class labels y for a class-conditional discriminator, got None")
            out = out + (self.embed(y) * h).sum(1)
        return out


class MixturePrior(nn.Module):
    """A learned prior for the VAE: ``p(z) = sum_k pi_k N(m_k, diag(s_k^2))``, trained with the rest of the ELBO.

    A fixed ``N(0, I)`` prior pulls every posterior toward one blob; a mixture lets the prior take the shape
    of the aggregate posterior, which lowers the KL term (a tighter ELBO) and puts prior samples where codes of
    real images lie (Tomczak & Welling 2018, https://arxiv.org/abs/1705.07120, learn such a mixture through
    pseudo-inputs; here the components are parameters, as in Dilokthanakul et al. 2016,
    https://arxiv.org/abs/1611.02648). Components start spread around the origin with unit variances.
    """

    def __init__(self, components: int, dim: int):
        super().__init__()
        if components < 1:
            raise ConfigError(f"expected a prior mixture of at least 1 component, got {components}")
        self.means = nn.Parameter(torch.randn(components, dim) * 0.5)
        self.logvars = nn.Parameter(torch.zeros(components, dim))
        self.logits = nn.Parameter(torch.zeros(components))

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """``log p(z)`` per code, in nats. Shape: ``N x D`` -> ``N``."""
        d = z.unsqueeze(1) - self.means  # N x K x D
        per = -0.5 * (d.square() * (-self.logvars).exp() + self.logvars + _LOG_2PI).sum(2)
        return (per + self.logits.log_softmax(0)).logsumexp(1)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """``n`` codes on the CPU (a component by weight, then its Gaussian; spread scaled by ``temperature``)."""
        logits, means, logvars = (t.detach().cpu() for t in (self.logits, self.means, self.logvars))
        k = random.multinomial(logits.softmax(0), n, generator=generator)
        eps = random.normal((n, means.shape[1]), generator=generator, device="cpu")
        return means[k] + temperature * eps * (0.5 * logvars[k]).exp()


class VAE(nn.Module):
    """A convolutional variational autoencoder (Kingma & Welling 2014, https://arxiv.org/abs/1312.6114).

    The encoder mirrors the DCGAN discriminator (strided 4x4 convolutions, here with BatchNorm and LeakyReLU),
    then a hidden fully connected layer gives the mean and log-variance of ``q(z | x)``; the decoder mirrors the
    generator and returns the logits (Bernoulli) or means before the sigmoid (Gaussian) of ``p(x | z)``.

    Args:
        latent_dim: size of ``z``.
        channels, image_size, width: as the :class:`Generator`.
        hidden: units of the fully connected layer on each side.
        batchnorm: BatchNorm after the hidden convolutions (and the decoder's projection).
        prior_components: 0 for the ``N(0, I)`` prior, K > 0 for a learned :class:`MixturePrior` of K components.

    Shape:
        ``encode``: ``N x C x H x W`` in [0, 1] -> ``(mu, logvar)``, each ``N x latent_dim``.
        ``decode``: ``N x latent_dim`` -> ``N x C x H x W`` logits; pixels are ``sigmoid(logits)``.
    """

    def __init__(self, *, latent_dim: int, channels: int, image_size: Sequence[int], width: int = 32,
                 hidden: int = 256, batchnorm: bool = True, prior_components: int = 0):
        super().__init__()
        stages, (h, w) = upsampling_stages(image_size)
        widths = _widths(width, stages)
        self.latent_dim = latent_dim
        norm = nn.BatchNorm2d if batchnorm else (lambda c: nn.Identity())
        enc, c_in = [], channels
        for c_out in widths[::-1]:
            enc += [nn.Conv2d(c_in, c_out, 4, 2, 1, bias=not batchnorm), norm(c_out), nn.LeakyReLU(0.2, True)]
            c_in = c_out
        flat = widths[0] * h * w
        self.encoder = nn.Sequential(*enc, nn.Flatten(), nn.Linear(flat, hidden), nn.LeakyReLU(0.2, True),
                                     nn.Linear(hidden, 2 * latent_dim))
        dec = [nn.Linear(latent_dim, hidden), nn.ReLU(True), nn.Linear(hidden, flat, bias=not batchnorm),
               nn.Unflatten(1, (widths[0], h, w)), norm(widths[0]), nn.ReLU(True)]
        for c_in, c_out in zip(widths, widths[1:]):
            dec += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=not batchnorm), norm(c_out), nn.ReLU(True)]
        dec.append(nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1))
        self.decoder = nn.Sequential(*dec)
        self.prior = MixturePrior(prior_components, latent_dim) if prior_components else None

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.encoder(x * 2 - 1).chunk(2, dim=1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.encode(x)
