"""Same attacks before and after a refactor: PGD-40 time and APGD / strong robust accuracy, from one code tree.

Run it once from each tree's root (the tree's `optik/` is imported, since the working directory comes first on
sys.path), one after the other on an idle machine, against the same run folder, and compare:

    (cd OLD_TREE && python /path/to/benchmarks/attack_refactor.py RUN)
    (cd NEW_TREE && python /path/to/benchmarks/attack_refactor.py RUN)

Prints JSON: PGD-40 (Linf, eps 0.3, alpha 0.01, seed 0) on the first 1,000 test images, median of 3, with a hash
of its adversarial images; APGD-CE and strong (APGD-CE + APGD-T) at eps 0.1, 100 steps, seed 0, on 200 images:
robust accuracy and hashes. Equal hashes mean bit-identical adversarial images.
"""
import hashlib
import json
import statistics
import sys
import time

import torch

from optik.api import conform
from optik.robustness import APGD, PGD, Strong
from optik.runs import Run


def digest(t: torch.Tensor) -> str:
    return hashlib.sha256(t.numpy().tobytes()).hexdigest()[:16]


def main(run: str) -> dict:
    torch.set_num_threads(2)
    opened = Run.open(run, kind="classifier")
    model = opened.model("cpu").eval()
    test = opened.data().splits["test"]
    x, y = conform(test.take(range(1000)), model).float() / 255, test.labels[:1000]
    times = []
    for _ in range(3):
        start = time.perf_counter()
        adv = PGD(model, eps=0.3, alpha=0.01, steps=40, seed=0).generate(x, y)
        times.append(time.perf_counter() - start)
    out = {"pgd40_s": statistics.median(times), "pgd40_all": times, "pgd_sha": digest(adv)}
    for name, cls in (("apgd", APGD), ("strong", Strong)):
        a = cls(model, eps=0.1, steps=100, seed=0)(x[:200], y[:200]).adv
        with torch.no_grad():
            out[f"{name}_acc"] = float((model(a).argmax(1) == y[:200]).float().mean())
        out[f"{name}_sha"] = digest(a)
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
