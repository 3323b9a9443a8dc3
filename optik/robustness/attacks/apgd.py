"""Auto-PGD (Croce & Hein 2020, https://arxiv.org/abs/2003.01690): APGD with the cross-entropy, DLR or margin
loss, and APGD-T, targeted APGD over the most likely wrong classes."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from optik.core.errors import ConfigError
from optik.robustness.attacks.base import Attack
from optik.robustness.attacks.losses import dlr_classes, dlr_loss, margin_loss
from optik.robustness.attacks.registry import ATTACKS


@ATTACKS.register("apgd", summary="APGD-CE: auto-PGD, no step size to tune",
                  budget="fixed", norms=("linf", "l2"), iterative=True)
class APGD(Attack):
    """Auto-PGD (Croce & Hein 2020), Linf or L2: no step size to tune.

    Step size starts at ``2 eps`` and halves per image at checkpoints (after 22 %, then shrinking intervals of the
    iterations) where the loss rose in fewer than ``rho`` of the steps since the last checkpoint, or neither step
    size nor best loss changed; then it restarts from the best point. Momentum 0.75. ``loss="ce"`` is APGD-CE;
    ``loss="dlr"`` with ``targeted=True`` is the targeted DLR loss of APGD-T (see :class:`APGDT`).

    The DLR loss reads the third (targeted: the fourth) largest logit, so it needs 3 (4) classes. With fewer, the
    attack uses the margin loss (:func:`margin_loss`, DLR's numerator) instead, as AutoAttack's authors advise, and
    says so in ``notes``; ``loss="margin"`` asks for it directly.

    Args:
        steps: iterations per run; rho: the share of loss increases below which the step size halves.
        loss: ``ce``, ``dlr`` or ``margin``; restarts: further runs on the images not yet fooled.
        any_error: with ``targeted``, count any misclassification as found, not only the target class (what
            APGD-T's runs toward one target class after another track).
    """

    name = "apgd"

    def __init__(self, model: nn.Module, *, eps: float, norm: str = "linf", steps: int = 100, loss: str = "ce",
                 rho: float = 0.75, restarts: int = 1, any_error: bool = False, **kw):
        super().__init__(model, eps=eps, norm=norm, **kw)
        if loss not in ("ce", "dlr", "margin"):
            raise ConfigError(f"expected loss ce, dlr or margin, got {loss!r}")
        self.steps, self.loss, self.rho, self.restarts, self.any_error = steps, loss, rho, restarts, any_error

    def _loss(self, logits, y, target):
        if self.loss == "ce":
            return -F.cross_entropy(logits, target, reduction="none") if target is not None else \
                F.cross_entropy(logits, y, reduction="none")
        needed = dlr_classes(target is not None)
        if self.loss == "margin" or logits.shape[1] >= needed:
            return (margin_loss if self.loss == "margin" else dlr_loss)(logits, y, target)
        self._note(f"{self.name}: the {'targeted ' if target is not None else ''}DLR loss needs at least {needed} "
                   f"classes; with {logits.shape[1]} the margin loss (DLR without its scale) was used instead")
        return margin_loss(logits, y, target)

    def _loss_grad(self, adv, y, target):
        adv = adv.detach().requires_grad_(True)
        logits = self.model(adv)
        loss = self._loss(logits, y, target)
        grad = torch.autograd.grad(loss.sum(), adv)[0]
        return logits.detach(), loss.detach(), grad

    def _step(self, adv, grad, step_size, x):
        if self.norm == "linf":
            return self._project(adv + step_size * grad.sign(), x)
        g = grad / (grad.flatten(1).norm(dim=1)[:, None, None, None] + 1e-12)
        return self._project(adv + step_size * g, x)

    def _start(self, x):
        if self.norm == "linf":
            t = self._uniform(x, -1, 1)
            return (x + self.eps * t / t.flatten(1).abs().amax(dim=1)[:, None, None, None]).clamp(0, 1)
        t = self._normal(x)
        return (x + self.eps * t / (t.flatten(1).norm(dim=1)[:, None, None, None] + 1e-12)).clamp(0, 1)

    def _checkpoints(self) -> list[int]:
        """Iterations after which step sizes are reviewed: the first after 22 % of the iterations, then intervals
        shrinking by 3 % down to 6 % (integer arithmetic, as the reference implementation)."""
        k, k_min, decrease = max(int(0.22 * self.steps), 1), max(int(0.06 * self.steps), 1), \
            max(int(0.03 * self.steps), 1)
        points, t = [], 0
        while t + k <= self.steps:
            t += k
            points.append(t)
            k = max(k - decrease, k_min)
        return points

    def _run(self, x, y, target):
        """One APGD run: the images and, per image, whether one was found that succeeds."""
        n = len(x)
        view = (n, 1, 1, 1)
        adv = self._start(x)
        def success(logits):
            return logits.argmax(1) != y if self.any_error else self._success(logits, y, target)

        logits, loss, grad = self._loss_grad(adv, y, target)
        found = success(logits)
        best_adv = torch.where(found[:, None, None, None], adv, x)
        x_best, loss_best, grad_best = adv.clone(), loss.clone(), grad.clone()
        step_size = torch.full(view, 2.0 * self.eps, device=x.device, dtype=x.dtype)
        checkpoints = self._checkpoints()
        last_check, increases = 0, torch.zeros(n, device=x.device)
        loss_best_last = loss_best.clone()
        step_size_last = step_size.clone()
        previous_loss = loss.clone()
        adv_old = adv.clone()
        for i in range(self.steps):
            with torch.no_grad():
                z = self._step(adv, grad, step_size, x)
                a = 0.75 if i > 0 else 1.0
                new = self._project(adv + a * (z - adv) + (1 - a) * (adv - adv_old), x)
                adv_old, adv = adv, new
            logits, loss, grad = self._loss_grad(adv, y, target)
            with torch.no_grad():
                ok = success(logits)
                best_adv = torch.where((ok & ~found)[:, None, None, None], adv, best_adv)
                found |= ok
                increases += (loss > previous_loss).float()
                previous_loss = loss
                better = loss > loss_best
                x_best = torch.where(better[:, None, None, None], adv, x_best)
                grad_best = torch.where(better[:, None, None, None], grad, grad_best)
                loss_best = torch.where(better, loss, loss_best)
                if i + 1 in checkpoints:
                    interval = i + 1 - last_check
                    oscillating = increases <= self.rho * interval
                    stuck = (step_size.view(-1) == step_size_last.view(-1)) & (loss_best <= loss_best_last)
                    halve = oscillating | stuck
                    step_size_last = step_size.clone()
                    step_size = torch.where(halve[:, None, None, None], step_size / 2, step_size)
                    adv = torch.where(halve[:, None, None, None], x_best, adv)
                    grad = torch.where(halve[:, None, None, None], grad_best, grad)
                    loss_best_last, increases, last_check = loss_best.clone(), torch.zeros_like(increases), i + 1
        return torch.where(found[:, None, None, None], best_adv, x_best), found

    def perturb(self, x, y, target):
        best, found = self._run(x, y, target)
        for _ in range(self.restarts - 1):
            todo = ~found
            if not todo.any():
                break
            adv, ok = self._run(x[todo], y[todo], None if target is None else target[todo])
            best[todo] = adv
            found[todo] = ok
        return best


@ATTACKS.register("apgd-t", summary="APGD-T: targeted APGD (DLR loss) toward each of the most likely wrong classes",
                  budget="fixed", norms=("linf", "l2"), iterative=True)
class APGDT(Attack):
    """APGD-T (Croce & Hein 2020): targeted APGD with the DLR loss toward each of the ``n_targets`` most likely
    wrong classes in turn, on the images still correctly classified; success is any misclassification.

    The targeted DLR loss needs 4 classes; with 2 or 3 the targeted margin loss ``z_t - max_{i != t} z_i`` is used
    (said in ``notes``). With 2 classes the one wrong class is the only target.
    """

    name = "apgd-t"

    def __init__(self, model: nn.Module, *, eps: float, norm: str = "linf", steps: int = 100, n_targets: int = 9,
                 **kw):
        super().__init__(model, eps=eps, norm=norm, **kw)
        self.steps, self.n_targets = steps, n_targets

    def perturb(self, x, y, target):
        with torch.no_grad():
            logits = self.model(x)
        k = logits.shape[1]
        loss = "dlr" if k >= dlr_classes(targeted=True) else "margin"
        if loss == "margin":
            self._note(f"{self.name}: the targeted DLR loss needs at least {dlr_classes(targeted=True)} classes; with "
                       f"{k} the targeted margin loss (z_t - max_(i != t) z_i) was used instead")
        order = logits.argsort(dim=1, descending=True)
        best = x.clone()
        robust = logits.argmax(dim=1) == y
        inner = APGD(self.model, eps=self.eps, norm=self.norm, steps=self.steps, loss=loss, targeted=True,
                     any_error=True, batch_size=self.batch_size, seed=self.seed, generator=self.generator)
        for j in range(1, min(self.n_targets, k - 1) + 1):
            todo = robust.nonzero().flatten()
            if not len(todo):
                break
            tgt = order[todo, j]
            tgt = torch.where(tgt == y[todo], order[todo, 0], tgt)  # the true class is never a target
            adv = inner.perturb(x[todo], y[todo], tgt)
            with torch.no_grad():
                fooled = self.model(adv).argmax(dim=1) != y[todo]
            best[todo[fooled]] = adv[fooled]
            robust[todo[fooled]] = False
        return best
