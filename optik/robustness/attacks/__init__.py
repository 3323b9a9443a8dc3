"""Adversarial attacks on classifiers that take pixels in [0, 1]: FGSM, PGD (Linf / L2), Carlini-Wagner L2,
APGD-CE / APGD-T, the ``strong`` ensemble of the last two, and TRADES' training adversary.

- ``base.py``: :class:`Attack`, which owns the contract every attack keeps, and :class:`AttackResult`;
- ``registry.py``: :data:`ATTACKS`, what each attack declares (:class:`AttackSpec`: budget, norms, ...) and
  :func:`make_attack`, which everything that runs an attack by name goes through;
- ``losses.py``: margins and the DLR loss; then one module per family: ``gradient.py`` (FGSM, PGD),
  ``apgd.py`` (APGD, APGD-T), ``cw.py``, ``ensemble.py`` (Strong), ``trades.py`` (TradesKL).

A new attack is one new module here: a subclass of :class:`Attack` registered with ``@ATTACKS.register(name,
budget=..., norms=...)``. Every module of this package is imported below, so it needs no other edit: ``optik
attack --method``, the robustness curve, the playground (with ``playground=`` a label) and the registry's tests
pick it up.
"""
import importlib
import pkgutil

from optik.robustness.attacks.apgd import APGD, APGDT
from optik.robustness.attacks.base import NORMS, Attack, AttackResult, attack_mode
from optik.robustness.attacks.cw import CarliniWagnerL2
from optik.robustness.attacks.ensemble import Strong
from optik.robustness.attacks.gradient import FGSM, PGD
from optik.robustness.attacks.losses import dlr_classes, dlr_loss, margin, margin_loss
from optik.robustness.attacks.registry import (ATTACKS, BUDGETS, AttackSpec, attack_norm, list_attacks, make_attack,
                                               methods_help, register_attack)
from optik.robustness.attacks.trades import TradesKL

for _module in pkgutil.iter_modules(__path__):  # the attacks nobody imported above register themselves here
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["APGD", "APGDT", "ATTACKS", "BUDGETS", "FGSM", "NORMS", "PGD", "Attack", "AttackResult", "AttackSpec",
           "CarliniWagnerL2", "Strong", "TradesKL", "attack_mode", "attack_norm", "dlr_classes", "dlr_loss",
           "list_attacks", "make_attack", "margin", "margin_loss", "methods_help", "register_attack"]
