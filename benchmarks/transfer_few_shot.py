"""Few-shot transfer on mnist5k: pretrain on digits 0-4, then learn digits 5-9 from 20 labelled images per class.

    python benchmarks/transfer_few_shot.py [--model cnn] [--augment none default] [--seeds 0 1 2]

For each seed (which also picks the 100 labelled images, via split_seed) and each augmentation setting, the same
architecture is trained on the same 100 images four ways: from scratch, frozen backbone (feature extraction),
fine-tuned (all layers, backbone at a tenth of the learning rate) and gradual (frozen for half the epochs, then
fine-tuned). Test accuracy on the digits 5-9 of the fixed 1,000-image test split (about 500 images). The recipe
is the same for every mode (batch 20, 30 epochs, no validation split, the default optimizer and schedule).
"""
from __future__ import annotations

import argparse
import json
import logging
import platform
import statistics
import tempfile
import time
import warnings

import torch

import optik

MODES = {"scratch": {}, "frozen": {"freeze": "backbone"}, "fine-tuned": {"backbone_lr_scale": 0.1},
         "gradual": {"freeze": "backbone", "unfreeze_at": 15, "backbone_lr_scale": 0.1}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="cnn")
    p.add_argument("--augment", nargs="+", default=["none", "default"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()
    logging.getLogger("optik").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        pre = optik.train(data="mnist5k", classes="0,1,2,3,4", model=args.model, out=f"{tmp}/pre", progress=False)
        print(json.dumps({"pretrain_accuracy_0_4": pre.metrics["accuracy"],
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)
        results = {}
        for augment in args.augment:
            for seed in args.seeds:
                common = dict(data="mnist5k", classes="5,6,7,8,9", train_per_class=20, model=args.model, seed=seed,
                              split_seed=seed, epochs=30, batch_size=20, val_fraction=0.0, augment=augment,
                              progress=False)
                for mode, kw in MODES.items():
                    start = time.perf_counter()
                    weights = {"weights": f"{tmp}/pre"} if mode != "scratch" else {}
                    r = optik.train(out=f"{tmp}/{augment}-{mode}-{seed}", **common, **weights, **kw)
                    results.setdefault(augment, {}).setdefault(mode, []).append(r.metrics["accuracy"])
                    print(json.dumps({"augment": augment, "seed": seed, "mode": mode,
                                      "test_accuracy": r.metrics["accuracy"], "n_test": r.metrics["n"],
                                      "seconds": round(time.perf_counter() - start, 1)}), flush=True)
    summary = {aug: {mode: {"mean": round(statistics.mean(v), 4), "runs": v,
                            "gain_over_scratch_points": round(100 * (statistics.mean(v) - statistics.mean(r["scratch"])), 1)}
                     for mode, v in r.items()} for aug, r in results.items()}
    print(json.dumps({"benchmark": "transfer_few_shot", "model": args.model, "threads": torch.get_num_threads(),
                      "machine": platform.machine(), "torch": str(torch.__version__), "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
