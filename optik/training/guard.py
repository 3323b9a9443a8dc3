"""Stop a training whose loss became NaN or infinite, naming the step, before a checkpoint stores the damage."""
from __future__ import annotations

import torch

from optik.core.errors import OptikError


class TrainingDiverged(OptikError, FloatingPointError):
    """The training loss became NaN or infinite."""


class LossGuard:
    """Watches losses on their device: one ``where`` per step and no host synchronization, except in
    :meth:`check`, which the tasks call where they synchronize anyway (when logging, and at the end of an epoch,
    before its checkpoint is written). ``first_bad`` holds the first step whose loss was not finite."""

    def __init__(self) -> None:
        self.step: torch.Tensor | None = None
        self.first_bad: torch.Tensor | None = None

    def start(self, step: int, device: torch.device) -> None:
        """At the start of an epoch: steps are counted from the trainer's global step (one copy per epoch)."""
        self.step = torch.tensor(step, device=device)
        if self.first_bad is None or self.first_bad.device != torch.device(device):
            self.first_bad = torch.tensor(-1, device=device)

    def observe(self, *losses: torch.Tensor) -> None:
        bad = torch.stack([~torch.isfinite(loss.detach()).all() for loss in losses]).any()
        self.first_bad = torch.where((self.first_bad < 0) & bad, self.step, self.first_bad)
        self.step = self.step + 1

    def check(self, *, lr: float, what: str = "loss") -> None:
        if self.first_bad is None or int(self.first_bad) < 0:
            return
        raise TrainingDiverged(
            f"training stopped: the {what} became NaN or infinite at step {int(self.first_bad) + 1}. The run folder keeps "
            f"the checkpoint of the last epoch that ended with finite losses (checkpoints/last.ckpt, if one did). A "
            f"diverging loss usually means a learning rate too high for this model and data: try a lower --lr than "
            f"{lr:g}"
        )
