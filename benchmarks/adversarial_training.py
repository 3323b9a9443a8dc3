"""Adversarial training on mnist5k at eps = 0.3 within 15 minutes of 2-core CPU, then a strong evaluation.

    pip install --no-deps torchattacks
    python benchmarks/adversarial_training.py [--method trades] [--epochs 15] [--attack-steps 10] [--n 1000]
        [--ema-half-life IMAGES] [--seed S] [--train-eps E] [--model SPEC] [--attacks pgd40 apgd_ce strong]
        [--no-standard] [--trades-batchnorm joint|separate]

Trains `optik train --data mnist5k --adversarial METHOD --eps 0.3 ...` (wall time reported), and a standard
model unless --standard RUN is given. Then, on the fixed 1,000-image test split, for both models: clean accuracy,
robust accuracy under PGD-40 (alpha 0.01, random start), APGD-CE (100 iterations) and the `strong` ensemble
(APGD-CE + APGD-T, per-image worst case); and torchattacks' APGD (CE, 100 steps) on the adversarially trained
model in the same run, to compare APGD implementations. Bars (issue #4): training <= 15 min; clean >= 98.0 %;
strong >= 85 %; the standard model < 2 % under strong; optik APGD-CE no more than 0.5 point above torchattacks'.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch

import optik
from optik.api import conform, make_config, open_run_data
from optik.robustness import APGD, PGD, Strong


ATTACKS = ("pgd40", "apgd_ce", "strong")


def evaluate(model, x, y, *, eps: float, with_reference: bool, attacks=ATTACKS) -> dict:
    def robust(attack):
        start = time.perf_counter()
        r = attack(x, y)
        return round(1 - r.success.float().mean().item(), 4), round(time.perf_counter() - start, 1)

    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean().item()
    out = {"clean": round(clean, 4)}
    for name, attack in (("pgd40", PGD(model, eps=eps, steps=40, alpha=0.01)),
                         ("apgd_ce", APGD(model, eps=eps, steps=100)), ("strong", Strong(model, eps=eps))):
        if name not in attacks:
            continue
        out[name], out[name + "_s"] = robust(attack)
        print(json.dumps({name: out[name], "seconds": out[name + "_s"]}), flush=True)
    if with_reference:
        import torchattacks

        start = time.perf_counter()
        adv = torchattacks.APGD(model, eps=eps, steps=100, loss="ce", seed=0)(x, y)
        with torch.no_grad():
            out["torchattacks_apgd_ce"] = round((model(adv).argmax(1) == y).float().mean().item(), 4)
        out["torchattacks_apgd_ce_s"] = round(time.perf_counter() - start, 1)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--method", default="trades", choices=("pgd", "fgsm-rs", "trades"))
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--attack-steps", type=int, default=10)
    p.add_argument("--eps-ramp", type=int, default=4)
    p.add_argument("--eps", type=float, default=0.3, help="the radius evaluated (and trained, unless --train-eps)")
    p.add_argument("--train-eps", type=float, help="train against this radius instead (default: --eps)")
    p.add_argument("--model", default="cnn", help="a model name or CNN spec string")
    p.add_argument("--ema-half-life", type=float, default=0, help="keep a weight average (images; 0: off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--standard", help="a standard mnist5k run folder (default: train one)")
    p.add_argument("--out", help="keep the adversarially trained run here")
    p.add_argument("--evaluate", metavar="RUN", help="skip training: evaluate this adversarially trained run")
    p.add_argument("--attacks", nargs="+", default=list(ATTACKS), choices=ATTACKS,
                   help="the evaluations to run (strong takes longest: APGD-T on every survivor)")
    p.add_argument("--no-standard", action="store_true", help="skip the standard model (training and evaluation)")
    p.add_argument("--trades-batchnorm", default="joint", choices=("joint", "separate"),
                   help="TRADES: clean and adversarial images in one forward pass, or two (the authors')")
    args = p.parse_args()
    torch.set_num_threads(2)
    config = dict(data="mnist5k", model=args.model, adversarial=args.method, eps=args.train_eps or args.eps,
                  attack_steps=args.attack_steps,
                  eps_ramp=args.eps_ramp, epochs=args.epochs, augment="none", label_smoothing=0.0,
                  ema_half_life=args.ema_half_life, seed=args.seed,
                  **({"trades_batchnorm": args.trades_batchnorm} if args.method == "trades" else {}))
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        if args.evaluate:
            robust_model, train_s = optik.load(args.evaluate), None
            config = optik.run_info(args.evaluate)["config"]["config"]
        else:
            robust_model = optik.train(out=args.out or f"{tmp}/adv", progress=False, overwrite=bool(args.out),
                                       **config).model
            train_s = time.perf_counter() - start
            print(json.dumps({"adversarial_training_s": round(train_s, 1)}), flush=True)
        standard = None if args.no_standard else optik.load(args.standard) if args.standard else \
            optik.train(data="mnist5k", out=f"{tmp}/std", progress=False).model
    test = open_run_data(make_config(data="mnist5k")).splits["test"]
    idx = torch.arange(len(test))
    if args.n < len(idx):  # a random subset: the split is sorted by class
        idx = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(0))[:args.n]]
    x = conform(test.take(idx), robust_model).float().div(255)
    y = test.labels[idx]
    report = {"benchmark": "adversarial_training", "config": config,
              "train_minutes": round(train_s / 60, 2) if train_s else None,
              "threads": torch.get_num_threads(), "machine": platform.machine(), "torch": str(torch.__version__),
              "n": len(y)}
    report["adversarial"] = evaluate(robust_model.eval(), x, y, eps=args.eps, with_reference="apgd_ce" in args.attacks,
                                     attacks=args.attacks)
    if standard is not None:
        report["standard"] = evaluate(standard.eval(), x, y, eps=args.eps, with_reference=False, attacks=args.attacks)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
