"""Robustness: adversarial attacks, robustness curves and galleries, adversarial training."""
from optik.robustness.attacks import (APGD, APGDT, ATTACKS, FGSM, PGD, Attack, AttackResult, CarliniWagnerL2,
                                      Strong, TradesKL, make_attack)

__all__ = ["APGD", "APGDT", "ATTACKS", "FGSM", "PGD", "Attack", "AttackResult", "CarliniWagnerL2", "Strong",
           "TradesKL", "make_attack"]
