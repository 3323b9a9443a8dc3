"""``strong``: AutoAttack's two white-box parts, APGD-CE then APGD-T on what survives, per-image worst case."""
from __future__ import annotations

import torch
from torch import nn

from optik.robustness.attacks.apgd import APGD, APGDT
from optik.robustness.attacks.base import Attack
from optik.robustness.attacks.losses import dlr_classes
from optik.robustness.attacks.registry import ATTACKS


@ATTACKS.register("strong", summary="APGD-CE + APGD-T, per-image worst case (the default verdict)",
                  budget="fixed", norms=("linf", "l2"), iterative=True)
class Strong(Attack):
    """The default robustness verdict: per image the worst case over APGD-CE and APGD-T, each with 100 iterations,
    the second run only on what the first left robust.

    APGD-T's targeted DLR loss needs 4 classes: with 3 the second run is untargeted APGD with the DLR loss, with 2
    untargeted APGD with the margin loss (DLR is undefined for 2 classes); ``notes`` says which ran.

    Args:
        steps: iterations of each part; n_targets: APGD-T's target classes (the most likely wrong ones).
    """

    name = "strong"

    def __init__(self, model: nn.Module, *, eps: float, norm: str = "linf", steps: int = 100, n_targets: int = 9,
                 **kw):
        super().__init__(model, eps=eps, norm=norm, **kw)
        self.steps, self.n_targets = steps, n_targets

    def perturb(self, x, y, target):
        # both parts draw from this call's generator, in turn: the stream continues from one to the other
        common = dict(eps=self.eps, norm=self.norm, steps=self.steps, batch_size=self.batch_size, seed=self.seed,
                      generator=self.generator)
        first = APGD(self.model, loss="ce", **common)
        best = first.perturb(x, y, None)
        with torch.no_grad():
            logits = self.model(best)
        robust = (logits.argmax(dim=1) == y).nonzero().flatten()
        k = logits.shape[1]
        if k >= dlr_classes(targeted=True):
            second = APGDT(self.model, n_targets=self.n_targets, **common)
        else:
            second = APGD(self.model, loss="dlr" if k >= dlr_classes(targeted=False) else "margin", **common)
            self._note(f"{self.name}: APGD-T needs at least {dlr_classes(targeted=True)} classes; with {k} the second "
                       f"run is untargeted APGD with the {second.loss.upper() if second.loss == 'dlr' else 'margin'} "
                       f"loss")
        if len(robust):
            adv = second.perturb(x[robust], y[robust], None)
            for note in second.notes:
                self._note(note)
            with torch.no_grad():
                fooled = self.model(adv).argmax(dim=1) != y[robust]
            best[robust[fooled]] = adv[fooled]
        return best
