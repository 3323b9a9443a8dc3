"""Temperature scaling fitted on logits vs on probabilities clipped at 1e-12 (issue #17), against SciPy's fit.

    python benchmarks/calibration_logits.py [--n 5000] [--classes 10] [--temperature 8] [--seeds 0 1 2]

A model overconfident by a known temperature: true labels are drawn from softmax(u) with u ~ N(0, 1.6^2) per
class, the model's logits are u * T. The fit on logits (optik's fit_temperature) should recover about T and match
SciPy's bounded search on the same NLL; a fit on log-probabilities clipped at 1e-12 (what optik did before) cannot,
once true-class probabilities fall below the clip. ECE after scaling is reported for both (15 bins).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
import scipy.optimize
import scipy.special

from optik.evaluation.calibration import apply_temperature, calibration_bins, fit_temperature


def scipy_fit(scores: np.ndarray, y: np.ndarray) -> float:
    nll = lambda t: -scipy.special.log_softmax(scores / t, axis=1)[np.arange(len(y)), y].mean()  # noqa: E731
    return float(scipy.optimize.minimize_scalar(nll, bounds=(0.05, 20), method="bounded",
                                                options={"xatol": 1e-10}).x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--temperature", type=float, default=8.0)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()
    for seed in args.seeds:
        rng = np.random.default_rng(seed)
        u = rng.normal(scale=1.6, size=(args.n, args.classes))
        y = np.array([rng.choice(args.classes, p=q) for q in scipy.special.softmax(u, axis=1)])
        logits = u * args.temperature
        probs = scipy.special.softmax(logits, axis=1)
        clipped_logp = np.log(np.clip(probs, 1e-12, None))
        t_logits, t_clipped = fit_temperature(logits, y), scipy_fit(clipped_logp, y)
        print(json.dumps({
            "seed": seed, "n": args.n, "classes": args.classes, "true_temperature": args.temperature,
            "share_true_class_p_below_1e-12": round(float((probs[np.arange(args.n), y] < 1e-12).mean()), 4),
            "T_optik_logits": round(t_logits, 4), "T_scipy_logits": round(scipy_fit(logits, y), 4),
            "T_clipped_probabilities": round(t_clipped, 4),
            "ece_before": round(calibration_bins(probs, y)["ece"], 4),
            "ece_after_logits": round(calibration_bins(apply_temperature(logits, t_logits), y)["ece"], 4),
            "ece_after_clipped": round(calibration_bins(apply_temperature(clipped_logp, t_clipped), y)["ece"], 4),
        }))


if __name__ == "__main__":
    main()
