"""Module modes: run a model in eval mode for a while, then give every submodule its own mode back."""
from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn


@contextlib.contextmanager
def eval_mode(module: nn.Module, *, freeze: bool = False) -> Iterator[None]:
    """Eval mode for the duration; afterwards every submodule gets back the mode it had.

    Restoring only the top module's flag (``module.train(was_training)``) would switch every submodule to that
    mode, including the BatchNorm layers a frozen backbone keeps in eval mode, whose running statistics would then
    move. With ``freeze`` the parameters also stop requiring gradients (and get their flags back after).
    """
    modes = [(m, m.training) for m in module.modules()]
    flags = [(p, p.requires_grad) for p in module.parameters()] if freeze else []
    module.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        for m, mode in modes:
            m.training = mode
