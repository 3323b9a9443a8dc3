"""Attacks against a standard mnist5k CNN: speed and strength, side by side with torchattacks and a bare loop.

    pip install --no-deps torchattacks   # its pinned `requests` would downgrade other packages
    python benchmarks/attack_bench.py [--run RUN] [--threads 2] [--device cpu]

Without --run it trains the default `optik train --data mnist5k` model first (about 80 s). Measured in one process:

1. PGD-40 (Linf, eps 0.3, alpha 0.01, random start) on 1,000 test images: optik, a bare PyTorch loop (the
   textbook ``autograd.grad`` loop, model parameters left as they are) and torchattacks.PGD. Median of 3 runs.
2. C&W L2 at equal steps (1 x 100 Adam steps, c = 1, lr 0.01) on 100 images: optik vs torchattacks.CW.
3. C&W L2 as optik runs it by default (binary search) on 100 images: success rate, mean L2 of the
   successful perturbations, images/s; torchattacks.CW at c = 1 for comparison (it has no binary search).
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

import optik
from optik.api import conform
from optik.runs import Run
from optik.robustness import PGD, CarliniWagnerL2


def bare_pgd(model, x, y, *, eps, alpha, steps):
    adv = (x + torch.empty_like(x).uniform_(-eps, eps)).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y)
        grad, = torch.autograd.grad(loss, adv)
        adv = torch.min(torch.max(adv.detach() + alpha * grad.sign(), x - eps), x + eps).clamp(0, 1)
    return adv


def timed(fn, repeats=3):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-pgd", action="store_true", help="only the C&W parts")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    import torchattacks

    with tempfile.TemporaryDirectory() as tmp:
        run = args.run or optik.train(data="mnist5k", out=f"{tmp}/std", progress=False).run_dir
        model = optik.load(run, device=args.device).eval()
        test = Run.open(run).split("test")
        x = conform(test.take(range(len(test))), model).float().div(255).to(args.device)
        y = test.labels.to(args.device)
    out = {"benchmark": "attack_bench", "threads": args.threads, "device": args.device,
           "machine": platform.machine(), "torch": str(torch.__version__), "torchattacks": torchattacks.__version__}

    def acc(a, labels=y):
        with torch.no_grad():
            return (model(a).argmax(1) == labels).float().mean().item()

    # 1. PGD-40
    if not args.skip_pgd:
        kw = dict(eps=0.3, alpha=0.01, steps=40)
        t_optik, r = timed(lambda: PGD(model, **kw)(x, y))
        t_bare, bare_adv = timed(lambda: bare_pgd(model, x, y, **kw))
        t_ta, ta_adv = timed(lambda: torchattacks.PGD(model, **kw)(x, y))
        out["pgd40"] = {"n": len(x), "optik_s": round(t_optik, 3), "bare_loop_s": round(t_bare, 3),
                        "torchattacks_s": round(t_ta, 3), "optik_vs_bare": round(t_optik / t_bare, 3),
                        "optik_speedup_vs_torchattacks": round(t_ta / t_optik, 3),
                        "robust_accuracy": {"optik": 1 - r.success.float().mean().item(), "bare": acc(bare_adv),
                                            "torchattacks": acc(ta_adv)}}
        print(json.dumps(out["pgd40"]), flush=True)

    # 2. C&W at equal steps
    xs, ys = x[::10], y[::10]  # 100 images of every class (the split is sorted by class)
    t_cw, cw = timed(lambda: CarliniWagnerL2(model, c=1.0, search_steps=1, steps=100, lr=0.01,
                                             abort_early=False)(xs, ys), repeats=1)
    t_ta_cw, ta_cw = timed(lambda: torchattacks.CW(model, c=1, steps=100, lr=0.01)(xs, ys), repeats=1)
    out["cw_equal_steps"] = {"n": 100, "steps": 100, "optik_s": round(t_cw, 2), "torchattacks_s": round(t_ta_cw, 2),
                             "optik_speedup_vs_torchattacks": round(t_ta_cw / t_cw, 3),
                             "success": {"optik": cw.success.float().mean().item(),
                                         "torchattacks": 1 - acc(ta_cw, ys)}}
    print(json.dumps(out["cw_equal_steps"]), flush=True)

    # 3. C&W as optik runs it
    attack = CarliniWagnerL2(model)
    start = time.perf_counter()
    cw = attack(xs, ys)
    seconds = time.perf_counter() - start
    with torch.no_grad():
        correct = model(xs).argmax(1) == ys
    ok = cw.success & correct
    l2 = cw.norms(xs)["l2"][ok]
    out["cw_default"] = {"n": 100, "clean_correct": int(correct.sum()),
                         "success_rate_of_correct": ok.sum().item() / correct.sum().item(),
                         "mean_l2": l2.mean().item(), "median_l2": l2.median().item(), "seconds": round(seconds, 1),
                         "images_per_s": round(100 / seconds, 2),
                         "options": {k: getattr(attack, k) for k in ("c", "search_steps", "steps", "lr")}}
    print(json.dumps(out["cw_default"]), flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
