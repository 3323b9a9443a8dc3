"""GAN and VAE objectives: pure functions of logits, images and codes."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

GAN_LOSSES = ("minimax", "nonsaturating", "hinge")


def discriminator_loss(kind: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """The discriminator's loss, averaged over the batch.

    ``minimax`` and ``nonsaturating`` share it (Goodfellow et al. 2014, https://arxiv.org/abs/1406.2661): the
    discriminator maximizes the log-likelihood of the correct source, ``log D(x) + log(1 - D(G(z)))``, i.e.
    minimizes ``softplus(-real) + softplus(fake)``. ``hinge`` (Lim & Ye 2017; Miyato et al. 2018):
    ``relu(1 - real) + relu(1 + fake)``.
    """
    if kind == "hinge":
        return F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    _check(kind)
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(kind: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator's loss, averaged over the batch.

    ``minimax``: the generator minimizes ``log P(S = fake | G(z)) = log(1 - D(G(z))) = -softplus(fake)``; it
    saturates (vanishing gradients) while the discriminator wins, which is why ``nonsaturating`` maximizes
    ``log D(G(z))`` instead (``softplus(-fake)``, the paper's own recommendation). ``hinge``: ``-fake``.
    """
    if kind == "hinge":
        return -fake_logits.mean()
    _check(kind)
    if kind == "minimax":
        return -F.softplus(fake_logits).mean()
    return F.softplus(-fake_logits).mean()


def _check(kind: str) -> None:
    if kind not in GAN_LOSSES:
        raise ValueError(f"expected a GAN loss in {GAN_LOSSES}, got {kind!r}")


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """``E ||grad_x D(x)||^2`` on real images (Mescheder et al. 2018, https://arxiv.org/abs/1801.04406).

    ``real_images`` must have ``requires_grad`` set before the discriminator saw them. Multiply by ``gamma / 2``.
    """
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.square().flatten(1).sum(1).mean()


def kl_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mu, exp(logvar)) || N(0, I))`` per sample, in nats. Shape: ``N x D`` -> ``N``."""
    return 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)


def reconstruction_nll(kind: str, logits: torch.Tensor, x: torch.Tensor, *, log_sigma: torch.Tensor | float = 0.0
                       ) -> torch.Tensor:
    """``-log p(x | z)`` per sample, in nats, summed over pixels.

    ``bernoulli``: binary cross-entropy of ``sigmoid(logits)`` against ``x`` (grayscale targets are used as they
    are, as is usual for MNIST; the value is then a cross-entropy, not a normalized density). ``gaussian``: a
    normal with mean ``sigmoid(logits)`` and standard deviation ``exp(log_sigma)`` (a fixed or learned scalar).
    Shape: ``N x C x H x W`` -> ``N``.
    """
    if kind == "bernoulli":
        return F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
    if kind == "gaussian":
        log_sigma = torch.as_tensor(log_sigma, dtype=x.dtype, device=x.device)
        z = (x - torch.sigmoid(logits)) / log_sigma.exp()
        per_pixel = 0.5 * z.square() + log_sigma + 0.5 * math.log(2 * math.pi)
        return per_pixel.flatten(1).sum(1)
    raise ValueError(f"expected a likelihood bernoulli or gaussian, got {kind!r}")


def kl_to_prior(mu: torch.Tensor, logvar: torch.Tensor, *, prior=None, noise: torch.Tensor | None = None
                ) -> torch.Tensor:
    """``KL(q(z | x) || p(z))`` per sample, in nats: exact for the ``N(0, I)`` prior (``prior=None``); for a learned
    prior (:class:`optik.generative.nets.MixturePrior`) the one-sample estimate ``log q(z | x) - log p(z)`` at the
    code ``z = mu + noise * exp(logvar / 2)`` that the decoder saw (unbiased; its mean over a test set is
    accurate to a fraction of a nat). Shape: ``N x D`` -> ``N``."""
    if prior is None:
        return kl_normal(mu, logvar)
    if noise is None:
        raise ValueError("expected the reparameterization noise for a KL estimate against a learned prior")
    log_q = -0.5 * (noise.square() + logvar + math.log(2 * math.pi)).sum(1)
    return log_q - prior.log_prob(mu + noise * (0.5 * logvar).exp())


def negative_elbo(kind: str, logits: torch.Tensor, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, *,
                  log_sigma: torch.Tensor | float = 0.0, prior=None, noise: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(reconstruction NLL, KL)`` per sample; the loss is ``nll + beta * kl`` and ``-ELBO = nll + kl`` (nats).
    ``prior``, ``noise``: see :func:`kl_to_prior`."""
    return reconstruction_nll(kind, logits, x, log_sigma=log_sigma), kl_to_prior(mu, logvar, prior=prior,
                                                                                 noise=noise)
