"""TRADES' adversary (Zhang et al. 2019): the inner maximization adversarial training with ``--adversarial trades``
runs. Registered as ``trades-kl``, so it can also be measured like any attack."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optik.core import seed as random
from optik.core.errors import ConfigError
from optik.robustness.attacks.base import Attack
from optik.robustness.attacks.registry import ATTACKS


@ATTACKS.register("trades-kl", summary="TRADES' training adversary: signed steps that maximize KL(p(x) || p(x'))",
                  budget="fixed", norms=("linf",), iterative=True)
class TradesKL(Attack):
    """The inner maximization of TRADES (Zhang et al. 2019, https://arxiv.org/abs/1901.08573), as the authors'
    ``trades.py`` does it: start at ``x + 0.001 * N(0, 1)``, then ``steps`` signed-gradient steps of size
    ``alpha`` that maximize ``KL(p(x) || p(x'))`` (summed over the batch), projected into the Linf ball and
    [0, 1]. ``y`` is not used: the adversary moves away from the model's own prediction on the clean image.
    This is a training adversary (see :meth:`Attack.generate`), not a robustness verdict.
    """

    name = "trades-kl"

    def __init__(self, model: nn.Module, *, eps: float, steps: int = 10, alpha: float | None = None, **kw):
        super().__init__(model, eps=eps, norm="linf", **kw)
        if steps < 1:
            raise ConfigError(f"expected steps >= 1, got {steps}")
        self.steps = steps
        self.alpha = alpha if alpha is not None else 2.5 * eps / steps

    def perturb(self, x, y, target):
        with torch.no_grad():
            p_clean = F.softmax(self.model(x), 1)
        # the authors start just off the image and do not clamp the start (its first step is nearly random: the
        # KL and its gradient are ~0 at x, so the noise decides); every step after is projected and clamped
        adv = x + 0.001 * random.normal(x.shape, generator=self.generator, device=x.device, dtype=x.dtype)
        for _ in range(self.steps):
            adv = adv.detach().requires_grad_(True)
            kl = F.kl_div(F.log_softmax(self.model(adv), 1), p_clean, reduction="sum")
            g = torch.autograd.grad(kl, adv)[0]
            adv = self._project(adv.detach() + self.alpha * g.sign(), x)
        return adv
