"""The contract every attack keeps, enforced by :class:`Attack`, not by each subclass:

- the model runs in eval mode and gets its own mode back; its parameters get no gradients (they are switched
  off for the attack, which also saves the weight-gradient kernels);
- the returned images lie in [0, 1] and inside the norm ball;
- success is recomputed from the returned images (never taken from the attack's bookkeeping), and where an
  attack fails the clean image is returned and flagged, so nothing counts as a success that is not one;
- memory is bounded by ``batch_size`` images at a time;
- random starts come from one explicit generator: seeded with ``seed`` on each call, or handed over (a training
  task's, or a composite attack's to its parts).
"""
from __future__ import annotations

import contextlib
import dataclasses
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


class Attack:
    """Base class: subclasses implement :meth:`perturb` on one batch; the rest of the contract lives here.

    Args:
        model: maps images in [0, 1] to logits (an optik :class:`~optik.models.Classifier`, or any module).
        eps: radius of the norm ball (None: unbounded, for minimal-perturbation attacks like C&W).
        norm: ``linf`` or ``l2``.
        targeted: move images to ``target`` classes instead of away from ``y``.
        batch_size: images per pass (bounds memory).
        seed: seeds the random starts (each call draws from a generator seeded with it).
        generator: draw the random starts from this generator instead, continuing its stream: how a composite
            attack hands its own stream to the attacks it is made of (they then draw what it would have drawn).
    """

    name = "attack"
    norm = "linf"

    def __init__(self, model: nn.Module, *, eps: float | None, norm: str | None = None, targeted: bool = False,
                 batch_size: int = 500, seed: int = 0, generator: torch.Generator | None = None):
        self.model = model
        self.norm = norm or self.norm
        if self.norm not in NORMS:
            raise ConfigError(f"expected norm linf or l2, got {self.norm!r}")
        if eps is not None and not (eps >= 0 and math.isfinite(eps)):
            raise ConfigError(f"expected eps >= 0, got {eps!r}")
        self.eps, self.targeted, self.batch_size, self.seed = eps, targeted, batch_size, seed
        self._given_generator = generator
        self.generator: torch.Generator | None = generator  # the stream the current call draws from
        self.notes: list[str] = []  # what the last call did differently from its paper, for the report

    # ------------------------------------------------------------------ the contract
    def __call__(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None) -> AttackResult:
        x, y, target = self._check(x, y, target)
        self.generator = self._call_generator(x.device)
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
        """Adversarial images for one batch of at most ``batch_size`` images (the model in eval mode, parameters
        frozen, gradients on); the base projects them into the ball and [0, 1] afterwards. A composite attack
        builds its parts with its own ``generator`` and calls their ``perturb``."""
        raise NotImplementedError

    def generate(self, x: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None, *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """The perturbed images only, in the ball and in [0, 1], without the success bookkeeping (failures are
        not replaced by clean images): what adversarial training feeds the model. Eval mode, no parameter
        gradients, as for ``__call__``; ``generator`` drives the random starts (default: the constructor's, else
        one seeded with ``seed``)."""
        self.generator = generator or self._call_generator(x.device)
        self.notes = []
        with attack_mode(self.model):
            return self._generate(x, y, target)

    def _generate(self, x, y, target):
        with torch.enable_grad():
            return torch.cat([self._project(self.perturb(xb, yb, tb).detach(), xb)
                              for xb, yb, tb in self._batches(x, y, target)])

    def _call_generator(self, device: torch.device) -> torch.Generator:
        return self._given_generator or torch.Generator(device=device).manual_seed(self.seed)

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


