"""Carlini & Wagner's L2 attack: a minimal-perturbation attack (no eps budget; a robustness curve thresholds the
L2 norm it found)."""
from __future__ import annotations

import torch
from torch import nn

from optik.robustness.attacks.base import Attack
from optik.robustness.attacks.losses import margin
from optik.robustness.attacks.registry import ATTACKS


@ATTACKS.register("cw", summary="Carlini-Wagner L2: the smallest perturbation that fools (unbounded)",
                  budget="minimal", norms=("l2",), playground="C&W (L2, smallest perturbation)")
class CarliniWagnerL2(Attack):
    """Carlini & Wagner's L2 attack (2017), as the paper does it.

    Optimizes ``w`` with Adam, ``x' = (tanh(w) + 1) / 2``, where ``w`` starts at ``atanh((2x - 1) * 0.999999)``
    so that pixels at exactly 0 or 1 can still move; minimizes ``||x' - x||^2 + c * max(z_y - max_{i!=y} z_i,
    -kappa)`` (targeted: ``max(max_{i!=t} z_i - z_t, -kappa)``); binary search over ``c`` per image (x10 until the
    first success, then bisection); early abort when the loss stops falling; keeps the smallest successful
    perturbation of any step and any ``c`` per image.

    Args:
        confidence: kappa, the logit margin a success must have.
        c: the initial constant; search_steps: binary search steps; steps: Adam steps per constant.
        lr: Adam's learning rate; eps: optional L2 bound (None: minimal perturbation, unbounded).
    """

    name = "cw"
    norm = "l2"

    def __init__(self, model: nn.Module, *, eps: float | None = None, confidence: float = 0.0, c: float = 1.0,
                 search_steps: int = 6, steps: int = 100, lr: float = 0.05, abort_early: bool = True, **kw):
        super().__init__(model, eps=eps, norm="l2", **kw)
        self.confidence, self.c, self.search_steps, self.steps, self.lr = confidence, c, search_steps, steps, lr
        self.abort_early = abort_early

    def _f(self, logits, y, target):
        if target is None:
            return (margin(logits, y) + self.confidence).clamp_min(0)
        return (-margin(logits, target) + self.confidence).clamp_min(0)

    def perturb(self, x, y, target):
        n = len(x)
        lower, upper = x.new_zeros(n), x.new_full((n,), 1e10)
        c = x.new_full((n,), self.c)
        best_l2, best_adv = x.new_full((n,), float("inf")), x.clone()
        w0 = torch.atanh((2 * x - 1) * 0.999999)
        for _ in range(self.search_steps):
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=self.lr)
            succeeded = torch.zeros(n, dtype=torch.bool, device=x.device)
            previous = float("inf")
            for step in range(self.steps):
                adv = (torch.tanh(w) + 1) / 2
                logits = self.model(adv)
                l2 = (adv - x).flatten(1).pow(2).sum(dim=1)
                f = self._f(logits, y, target)
                loss = (l2 + c * f).sum()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    ok = f <= 0 if self.confidence > 0 else self._success(logits, y, target)
                    improved = ok & (l2 < best_l2)
                    best_l2 = torch.where(improved, l2, best_l2)
                    best_adv = torch.where(improved[:, None, None, None], adv.detach(), best_adv)
                    succeeded |= ok
                if self.abort_early and step % max(1, self.steps // 10) == 0:
                    if loss.item() > previous * 0.9999:
                        break
                    previous = loss.item()
            upper = torch.where(succeeded, torch.minimum(upper, c), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, c))
            c = torch.where(upper < 1e9, (lower + upper) / 2, c * 10)
        return best_adv
