"""Latent space: paths through it (linear and spherical interpolation), and a mixture to sample from."""
from __future__ import annotations

import torch
from torch import nn

from optik.core import seed as random


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Straight line ``(1 - t) a + t b``. Shape: ``a, b`` ``N x D``, ``t`` ``T`` -> ``N x T x D``."""
    t = t.to(a).view(1, -1, 1)
    return a.unsqueeze(1) * (1 - t) + b.unsqueeze(1) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation (Shoemake 1985; White 2016, https://arxiv.org/abs/1609.04468): follows the great
    circle between the directions of ``a`` and ``b`` while the norm changes linearly, so midpoints keep the
    norm typical of Gaussian codes (a straight line passes through low-norm codes the model rarely saw).
    Falls back to :func:`lerp` for (anti-)parallel codes. Shape: ``a, b`` ``N x D``, ``t`` ``T`` -> ``N x T x D``.
    """
    t = t.to(a).view(1, -1, 1)
    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    ua, ub = a / na.clamp_min(1e-12), b / nb.clamp_min(1e-12)
    omega = (ua * ub).sum(1, keepdim=True).clamp(-1, 1).acos().unsqueeze(1)  # N x 1 x 1
    so = omega.sin()
    safe = so.abs() > 1e-6
    wa = torch.where(safe, ((1 - t) * omega).sin() / so.where(safe, torch.ones_like(so)), 1 - t)
    wb = torch.where(safe, (t * omega).sin() / so.where(safe, torch.ones_like(so)), t)
    direction = ua.unsqueeze(1) * wa + ub.unsqueeze(1) * wb
    norm = na.unsqueeze(1) * (1 - t) + nb.unsqueeze(1) * t
    return direction / direction.norm(dim=2, keepdim=True).clamp_min(1e-12) * norm


class LatentMixture(nn.Module):
    """A Gaussian mixture over a VAE's latent space, fitted after training to the posterior means of the
    training images: "ex-post density estimation" (Ghosh et al. 2020, https://arxiv.org/abs/1903.12436; the
    two-stage VAE of Dai & Wipf 2019 is the same idea with a second VAE).

    Why: the encoder does not fill the ``N(0, I)`` prior evenly (the "holes" in the aggregate posterior), so
    codes drawn from the prior land where the decoder saw no training image and decode to blurry in-between
    digits. Codes drawn from this mixture land where training images sit. The model and its ELBO do not change;
    only where sampling draws its codes does.

    Buffers (saved with the model): ``weights`` ``K``, ``means`` ``K x D``, ``scale_tril`` ``K x D x D`` (the
    Cholesky factors of the full covariances).
    """

    def __init__(self, components: int, dim: int):
        super().__init__()
        if components < 1 or dim < 1:
            raise ValueError(f"expected components >= 1 and dim >= 1, got {components} and {dim}")
        self.register_buffer("weights", torch.full((components,), 1.0 / components))
        self.register_buffer("means", torch.zeros(components, dim))
        self.register_buffer("scale_tril", torch.eye(dim).repeat(components, 1, 1))

    @property
    def components(self) -> int:
        return len(self.weights)

    @classmethod
    def fit(cls, codes: torch.Tensor, components: int, *, seed: int = 0) -> "LatentMixture":
        """Maximum-likelihood mixture of ``components`` full-covariance Gaussians (scikit-learn's EM, k-means
        start, float64) on ``codes`` ``N x D``."""
        from sklearn.mixture import GaussianMixture

        codes = codes.detach().double().cpu()
        n, dim = codes.shape
        if n < 2 * components:
            raise ValueError(f"expected at least {2 * components} codes to fit {components} mixture components, "
                             f"got {n}")
        gm = GaussianMixture(components, covariance_type="full", reg_covar=1e-6, random_state=seed)
        gm.fit(codes.numpy())
        mixture = cls(components, dim)
        mixture.weights.copy_(torch.from_numpy(gm.weights_))
        mixture.means.copy_(torch.from_numpy(gm.means_))
        mixture.scale_tril.copy_(torch.linalg.cholesky(torch.from_numpy(gm.covariances_)))
        return mixture

    def sample(self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """``n`` codes ``N x D`` on the CPU (the same on any device): a component by weight, then its Gaussian,
        with the spread around the component's mean scaled by ``temperature``."""
        weights, means, tril = (b.detach().cpu().double() for b in (self.weights, self.means, self.scale_tril))
        k = random.multinomial(weights, n, generator=generator)
        eps = random.normal((n, means.shape[1]), generator=generator, device="cpu", dtype=torch.float64)
        return (means[k] + temperature * (tril[k] @ eps.unsqueeze(-1)).squeeze(-1)).float()

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """Log-density of codes ``N x D`` under the mixture (float64)."""
        dist = torch.distributions.MultivariateNormal(self.means.double(), scale_tril=self.scale_tril.double())
        per = dist.log_prob(z.double().unsqueeze(1)) + self.weights.double().log()
        return per.logsumexp(1)
