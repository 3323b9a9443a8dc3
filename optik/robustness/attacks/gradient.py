"""Gradient attacks with a fixed budget: FGSM and PGD (Linf / L2; ``pgd-l2`` is PGD registered with ``norm="l2"``).
FGSM is one step of PGD without a random start (the tests hold them equal)."""
from __future__ import annotations

import torch
from torch import nn

from optik.core.errors import ConfigError
from optik.robustness.attacks.base import Attack
from optik.robustness.attacks.losses import margin
from optik.robustness.attacks.registry import ATTACKS


@ATTACKS.register("fgsm", summary="fast gradient sign method: one signed-gradient step of size eps",
                  budget="fixed", norms=("linf",), playground="FGSM (Linf, one step)")
class FGSM(Attack):
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size ``eps`` along the gradient's sign."""

    name = "fgsm"

    def __init__(self, model: nn.Module, *, eps: float, **kw):
        super().__init__(model, eps=eps, norm="linf", **kw)

    def perturb(self, x, y, target):
        return x + self.eps * self._grad(x, y, target).sign()


@ATTACKS.register("pgd", summary="projected gradient descent, random start (--restarts: worst case per image)",
                  budget="fixed", norms=("linf", "l2"), iterative=True, playground="PGD (Linf)")
class PGD(Attack):
    """Projected gradient descent (Madry et al. 2018) in Linf or L2.

    Args:
        steps: gradient steps per restart.
        alpha: step size (default ``2.5 * eps / steps``, Madry's choice).
        random_start: start from a uniform point of the ball (Linf) or a random direction and radius (L2).
        restarts: independent random starts; per image the worst case is kept (a success, else the highest loss).
    """

    name = "pgd"

    def __init__(self, model: nn.Module, *, eps: float, norm: str = "linf", steps: int = 10,
                 alpha: float | None = None, random_start: bool = True, restarts: int = 1, **kw):
        super().__init__(model, eps=eps, norm=norm, **kw)
        if steps < 1 or restarts < 1:
            raise ConfigError(f"expected steps >= 1 and restarts >= 1, got {steps} and {restarts}")
        self.steps, self.random_start, self.restarts = steps, random_start, restarts
        self.alpha = alpha if alpha is not None else 2.5 * eps / steps

    def _start(self, x: torch.Tensor) -> torch.Tensor:
        if not self.random_start:
            return x.clone()
        if self.norm == "linf":
            return (x + self._uniform(x, -self.eps, self.eps)).clamp(0, 1)
        delta = self._normal(x)
        norms = delta.flatten(1).norm(dim=1)[:, None, None, None]
        radius = self._uniform(norms, 0, 1)
        return (x + delta * radius / norms * self.eps).clamp(0, 1)

    def _run(self, x, y, target):
        adv = self._start(x)
        for _ in range(self.steps):
            g = self._grad(adv, y, target)
            if self.norm == "linf":
                step = g.sign()
            else:
                step = g / (g.flatten(1).norm(dim=1)[:, None, None, None] + 1e-10)
            adv = self._project(adv + self.alpha * step, x)
        return adv

    def perturb(self, x, y, target):
        best = self._run(x, y, target)
        if self.restarts == 1:
            return best
        with torch.no_grad():
            best_logits = self.model(best)
        for _ in range(self.restarts - 1):
            adv = self._run(x, y, target)
            with torch.no_grad():
                logits = self.model(adv)
                better = _better_attack(logits, best_logits, y, target)
            best = torch.where(better[:, None, None, None], adv, best)
            best_logits = torch.where(better[:, None], logits, best_logits)
        return best


def _better_attack(new: torch.Tensor, old: torch.Tensor, y, target) -> torch.Tensor:
    """Per image: ``new`` logits are a better attack than ``old`` (a success where old failed, else a lower
    margin of the true class / higher margin of the target)."""
    if target is None:
        m_new, m_old = margin(new, y), margin(old, y)
        return m_new < m_old
    m_new, m_old = -margin(new, target), -margin(old, target)
    return m_new < m_old


ATTACKS.add("pgd-l2", PGD, summary="PGD in L2 (pgd with norm l2)", budget="fixed", norms=("l2",), iterative=True,
            options={"norm": "l2"})
