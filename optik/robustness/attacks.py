"""Adversarial attacks on classifiers that take pixels in [0, 1]: FGSM, PGD (Linf / L2), Carlini-Wagner L2,
APGD-CE / APGD-T and the ``strong`` ensemble of the last two.

Every attack shares one contract, enforced by :class:`Attack`, not by each subclass:

- the model runs in eval mode and gets its own mode back; its parameters get no gradients (they are switched
  off for the attack, which also saves the weight-gradient kernels);
- the returned images lie in [0, 1] and inside the norm ball;
- success is recomputed from the returned images (never taken from the attack's bookkeeping), and where an
  attack fails the clean image is returned and flagged, so nothing counts as a success that is not one;
- memory is bounded by ``batch_size`` images at a time.
"""
from __future__ import annotations

import contextlib
import dataclasses
import inspect
import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from optik.core import seed as random
from optik.core.errors import ConfigError, DataError
from optik.core.images import check_images
from optik.core.modes import eval_mode

NORMS = ("linf", "l2")


@dataclass
class AttackResult:
    """What an attack returns for ``N`` images.

    Attributes:
        adv: ``N x C x H x W`` in [0, 1]: the adversarial image where ``success``, else the clean image.
        success: ``N`` bool, recomputed from ``adv``: misclassified (untargeted) or classified as the target.
        clean_logits, adv_logits: ``N x K`` logits of the clean and the returned images.
        y: true labels; target: the target labels of a targeted attack (else None).
    """

    adv: torch.Tensor
    success: torch.Tensor
    clean_logits: torch.Tensor
    adv_logits: torch.Tensor
    y: torch.Tensor
    target: torch.Tensor | None = None

    def to(self, device: str | torch.device) -> "AttackResult":
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)
                                            if isinstance(getattr(self, f.name), torch.Tensor)})

    def norms(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image L2 and Linf norms of ``adv - x``."""
        d = (self.adv - x).flatten(1)
        return {"l2": d.norm(dim=1), "linf": d.abs().amax(dim=1)}


@contextlib.contextmanager
def attack_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode and no parameter gradients for the duration; afterwards every submodule gets its own mode back
    (a frozen backbone's BatchNorm layers stay in eval mode) and every parameter its flag."""
    with eval_mode(model, freeze=True):
        yield


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{i != y} z_i`` per image; right when every other logit is negative (masked with -inf,
    not multiplied by 0)."""
    other = logits.masked_fill(F.one_hot(y, logits.shape[1]).bool(), float("-inf")).amax(dim=1)
    return logits.gather(1, y[:, None]).squeeze(1) - other


def dlr_classes(targeted: bool) -> int:
    """The fewest classes the DLR loss is defined for: its denominator reads the third (untargeted) or the fourth
    (targeted) largest logit."""
    return 4 if targeted else 3


def dlr_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """Difference of logits ratio (Croce & Hein 2020), per image, to be maximized: shift- and scale-invariant.

    Untargeted: ``-(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3)``; targeted: ``-(z_y - z_t) / (z_pi1 - (z_pi3 +
    z_pi4) / 2)``, with ``z_pi`` the sorted logits. Needs at least 3 (untargeted) or 4 (targeted) classes: with
    fewer, use :func:`margin_loss`, as the attacks here do.
    """
    needed = dlr_classes(target is not None)
    if logits.shape[1] < needed:
        raise ConfigError(f"the {'targeted ' if target is not None else ''}DLR loss needs at least {needed} classes, "
                          f"got {logits.shape[1]}; use the margin loss")
    z = logits.sort(dim=1, descending=True).values
    if target is None:
        return -margin(logits, y) / (z[:, 0] - z[:, 2] + 1e-12)
    zy, zt = logits.gather(1, y[:, None]).squeeze(1), logits.gather(1, target[:, None]).squeeze(1)
    return -(zy - zt) / (z[:, 0] - 0.5 * (z[:, 2] + z[:, 3]) + 1e-12)


def margin_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> torch.Tensor:
    """The DLR loss without its scale: ``-(z_y - max_{i != y} z_i)`` untargeted, ``z_t - max_{i != t} z_i``
    targeted (Carlini & Wagner's margin), per image, to be maximized. Defined for any number of classes >= 2."""
    return -margin(logits, y) if target is None else margin(logits, target)


class Attack:
    """Base class: subclasses implement :meth:`perturb` on one batch; the rest of the contract lives here.

    Args:
        model: maps images in [0, 1] to logits (an optik :class:`~optik.models.Classifier`, or any module).
        eps: radius of the norm ball (None: unbounded, for minimal-perturbation attacks like C&W).
        norm: ``linf`` or ``l2``.
        targeted: move images to ``target`` classes instead of away from ``y``.
        batch_size: images per pass (bounds memory).
        seed: seeds the random starts (each call draws from a generator seeded with it).
    """

    name = "attack"
    norm = "linf"

    def __init__(self, model: nn.Module, *, eps: float | None, norm: str | None = None, targeted: bool = False,
                 batch_size: int = 500, seed: int = 0):
        self.model = model
        self.norm = norm or self.norm
        if self.norm not in NORMS:
            raise ConfigError(f"expected norm linf or l2, got {self.norm!r}")
        if eps is not None and not (eps >= 0 and math.isfinite(eps)):
            raise ConfigError(f"expected eps >= 0, got {eps!r}")
        self.eps, self.targeted, self.batch_size, self.seed = eps, targeted, batch_size, seed
        self.generator: torch.Generator | None = None
        self.notes: list[str] = []  # what the last call did differently from its paper, for the report

    # ------------------------------------------------------------------ the contract
    def __call__(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> AttackResult:
        x, y, target = self._check(x, y, target)
        device = x.device
        self.generator = torch.Generator(device=device).manual_seed(self.seed)
        self.notes = []
        with attack_mode(self.model):
            clean_logits = self._logits(x)
            adv = x.clone() if self.eps == 0 else self._generate(x, y, target)
            adv_logits = self._logits(adv)
        success = self._success(adv_logits, y, target)
        adv = torch.where(success[:, None, None, None], adv, x)
        adv_logits = torch.where(success[:, None], adv_logits, clean_logits)
        return AttackResult(adv, success, clean_logits, adv_logits, y, target)

    def perturb(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """Adversarial images for one batch (the model is in eval mode, parameters frozen)."""
        raise NotImplementedError

    def generate(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None, *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """The perturbed images only, in the ball and in [0, 1], without the success bookkeeping (failures are
        not replaced by clean images): what adversarial training feeds the model. Eval mode, no parameter
        gradients, as for ``__call__``; ``generator`` drives the random starts (default: seeded with ``seed``)."""
        self.generator = generator or torch.Generator(device=x.device).manual_seed(self.seed)
        self.notes = []
        with attack_mode(self.model):
            return self._generate(x, y, target)

    def _generate(self, x, y, target):
        with torch.enable_grad():
            return torch.cat([self._project(self.perturb(xb, yb, tb).detach(), xb)
                              for xb, yb, tb in self._batches(x, y, target)])

    # ------------------------------------------------------------------ helpers for subclasses
    def _check(self, x, y, target):
        check_images(x)
        y = torch.as_tensor(y, device=x.device).long()
        if y.shape != (len(x),):
            raise DataError(f"expected {len(x)} labels, got shape {tuple(y.shape)}")
        if self.targeted:
            if target is None:
                raise ConfigError(f"targeted {self.name} needs target labels")
            target = torch.as_tensor(target, device=x.device).long()
            if target.shape != y.shape:
                raise DataError(f"expected {len(x)} target labels, got shape {tuple(target.shape)}")
        elif target is not None:
            raise ConfigError(f"target labels given to an untargeted {self.name}; pass targeted=True")
        k = getattr(self.model, "num_classes", None)  # a Classifier knows it; any other module: only >= 0
        for what, t in (("labels", y), ("target labels", target)):
            if t is not None and len(t) and (t.min() < 0 or (k is not None and t.max() >= k)):
                raise DataError(f"expected {what} in [0, {k if k is not None else 'K'}), got values from "
                                f"{t.min().item()} to {t.max().item()}")
        return x, y, target

    def _batches(self, x, y, target):
        for i in range(0, len(x), self.batch_size):
            yield x[i:i + self.batch_size], y[i:i + self.batch_size], \
                None if target is None else target[i:i + self.batch_size]

    @torch.no_grad()
    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.model(x[i:i + self.batch_size]) for i in range(0, len(x), self.batch_size)]) \
            if len(x) else x.new_zeros(0, 0)

    def _success(self, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        pred = logits.argmax(dim=1)
        return pred == target if target is not None else pred != y

    def _project(self, adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Into the eps-ball around ``x`` and into [0, 1]."""
        if self.eps is not None:
            delta = adv - x
            if self.norm == "linf":
                delta = delta.clamp(-self.eps, self.eps)
            else:
                norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
                delta = delta * (self.eps / norms).clamp(max=1.0)[:, None, None, None]
            adv = x + delta
        return adv.clamp(0, 1)

    def _grad(self, adv: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None) -> torch.Tensor:
        """Gradient of the (mean) cross-entropy, ascended (untargeted) or descended toward ``target``."""
        adv = adv.detach().requires_grad_(True)
        logits = self.model(adv)
        loss = -F.cross_entropy(logits, target) if target is not None else F.cross_entropy(logits, y)
        return torch.autograd.grad(loss, adv)[0]

    def _uniform(self, like: torch.Tensor, low: float, high: float) -> torch.Tensor:
        """``U(low, high)`` noise shaped like ``like``, on its device, from the attack's generator (wherever that
        generator lives: a training task hands over its CPU generator)."""
        return random.uniform_like(like, low, high, generator=self.generator)

    def _normal(self, like: torch.Tensor) -> torch.Tensor:
        return random.normal_like(like, generator=self.generator)

    def _note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


class FGSM(Attack):
    """Fast gradient sign method (Goodfellow et al. 2015): one step of size ``eps`` along the gradient's sign."""

    name = "fgsm"

    def __init__(self, model: nn.Module, *, eps: float, **kw):
        super().__init__(model, eps=eps, norm="linf", **kw)

    def perturb(self, x, y, target):
        return x + self.eps * self._grad(x, y, target).sign()


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


class APGD(Attack):
    """Auto-PGD (Croce & Hein 2020), Linf or L2: no step size to tune.

    Step size starts at ``2 eps`` and halves per image at checkpoints (after 22 %, then shrinking intervals of the
    iterations) where the loss rose in fewer than ``rho`` of the steps since the last checkpoint, or neither step
    size nor best loss changed; then it restarts from the best point. Momentum 0.75. ``loss="ce"`` is APGD-CE;
    ``loss="dlr"`` with ``targeted=True`` is the targeted DLR loss of APGD-T (see :class:`APGDT`).

    The DLR loss reads the third (targeted: the fourth) largest logit, so it needs 3 (4) classes. With fewer, the
    attack uses the margin loss (:func:`margin_loss`, DLR's numerator) instead, as AutoAttack's authors advise, and
    says so in ``notes``; ``loss="margin"`` asks for it directly.
    """

    name = "apgd"

    def __init__(self, model: nn.Module, *, eps: float, norm: str = "linf", steps: int = 100, loss: str = "ce",
                 rho: float = 0.75, restarts: int = 1, **kw):
        super().__init__(model, eps=eps, norm=norm, **kw)
        if loss not in ("ce", "dlr", "margin"):
            raise ConfigError(f"expected loss ce, dlr or margin, got {loss!r}")
        self.steps, self.loss, self.rho, self.restarts = steps, loss, rho, restarts

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

    def _run(self, x, y, target, *, any_error: bool = False):
        """One APGD run; ``any_error`` counts any misclassification as a success (APGD-T's targeted runs)."""
        n = len(x)
        view = (n, 1, 1, 1)
        adv = self._start(x)
        def success(logits):
            return logits.argmax(1) != y if any_error else self._success(logits, y, target)

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
                     batch_size=self.batch_size, seed=self.seed)
        inner.generator = self.generator
        for j in range(1, min(self.n_targets, k - 1) + 1):
            todo = robust.nonzero().flatten()
            if not len(todo):
                break
            tgt = order[todo, j]
            tgt = torch.where(tgt == y[todo], order[todo, 0], tgt)  # the true class is never a target
            adv, _ = inner._run(x[todo], y[todo], tgt, any_error=True)
            with torch.no_grad():
                fooled = self.model(adv).argmax(dim=1) != y[todo]
            best[todo[fooled]] = adv[fooled]
            robust[todo[fooled]] = False
        return best


class Strong(Attack):
    """The default robustness verdict: per image the worst case over APGD-CE and APGD-T, each with 100 iterations,
    the second run only on what the first left robust.

    APGD-T's targeted DLR loss needs 4 classes: with 3 the second run is untargeted APGD with the DLR loss, with 2
    untargeted APGD with the margin loss (DLR is undefined for 2 classes); ``notes`` says which ran.
    """

    name = "strong"

    def __init__(self, model: nn.Module, *, eps: float, norm: str = "linf", steps: int = 100, **kw):
        super().__init__(model, eps=eps, norm=norm, **kw)
        self.steps = steps

    def perturb(self, x, y, target):
        common = dict(eps=self.eps, norm=self.norm, steps=self.steps, batch_size=self.batch_size, seed=self.seed)
        first = APGD(self.model, loss="ce", **common)
        first.generator = self.generator
        best = first.perturb(x, y, None)
        with torch.no_grad():
            logits = self.model(best)
        robust = (logits.argmax(dim=1) == y).nonzero().flatten()
        k = logits.shape[1]
        if k >= dlr_classes(targeted=True):
            second = APGDT(self.model, **common)
        else:
            second = APGD(self.model, loss="dlr" if k >= dlr_classes(targeted=False) else "margin", **common)
            self._note(f"{self.name}: APGD-T needs at least {dlr_classes(targeted=True)} classes; with {k} the second "
                       f"run is untargeted APGD with the {second.loss.upper() if second.loss == 'dlr' else 'margin'} "
                       f"loss")
        if len(robust):
            second.generator = self.generator
            adv = second.perturb(x[robust], y[robust], None)
            for note in second.notes:
                self._note(note)
            with torch.no_grad():
                fooled = self.model(adv).argmax(dim=1) != y[robust]
            best[robust[fooled]] = adv[fooled]
        return best


ATTACKS = {"fgsm": FGSM, "pgd": PGD, "pgd-l2": PGD, "cw": CarliniWagnerL2, "apgd": APGD, "apgd-t": APGDT,
           "strong": Strong}


def make_attack(method: str, model: nn.Module, *, eps: float | None, **kw) -> Attack:
    """An attack by its CLI name: fgsm, pgd, pgd-l2, cw, apgd (APGD-CE), apgd-t, strong."""
    key = method.lower()
    if key not in ATTACKS:
        raise ConfigError(f"expected --method one of {', '.join(ATTACKS)}, got {method!r}")
    if key == "pgd-l2":
        kw.setdefault("norm", "l2")
    cls = ATTACKS[key]
    accepted = {p for c in cls.__mro__ if "__init__" in vars(c)
                for p in inspect.signature(c.__init__).parameters} - {"self", "model", "kw"}
    unknown = sorted(set(kw) - accepted)
    if unknown:
        raise ConfigError(f"{method} takes no option {', '.join(unknown)}; its options: {', '.join(sorted(accepted))}")
    return cls(model, eps=eps, **kw)
