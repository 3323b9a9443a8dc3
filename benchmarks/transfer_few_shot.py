"""Few-shot transfer on mnist5k: pretrain on digits 0-4, then learn digits 5-9 from 20 labelled images per class.

    python benchmarks/transfer_few_shot.py [--model cnn] [--input-size N] [--augment none default] [--seeds 0 1 2]
                                           [--pretrain-classes 0,1,2,3,4] [--pretrain-epochs N] [--modes ...]

For each seed (which also picks the 100 labelled images, via split_seed) and each augmentation setting, the same
architecture is trained on the same 100 images four ways: from scratch, frozen backbone (feature extraction),
fine-tuned (all layers, backbone at a tenth of the learning rate) and gradual (frozen for half the epochs, then
fine-tuned). Test accuracy on the digits 5-9 of the fixed 1,000-image test split (about 500 images). The recipe
is the same for every mode (batch 20, 30 epochs, no validation split, the default optimizer and schedule).

``--pretrain-classes all`` measures the protocol's ceiling: a backbone that has seen every training image of
digits 5-9 with its label (the "oracle" row of benchmarks/README.md).
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
    p.add_argument("--input-size", type=int, default=None, help="the size the network sees (zoo models)")
    p.add_argument("--pretrain-classes", default="0,1,2,3,4", help="'all' for the oracle ceiling")
    p.add_argument("--pretrain-epochs", type=int, default=None, help="default: optik's default")
    p.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = p.parse_args()
    size = {"input_size": args.input_size} if args.input_size else {}
    logging.getLogger("optik").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        pre_classes = {} if args.pretrain_classes == "all" else {"classes": args.pretrain_classes}
        pre_epochs = {"epochs": args.pretrain_epochs} if args.pretrain_epochs else {}
        pre = optik.train(data="mnist5k", model=args.model, out=f"{tmp}/pre", progress=False, **pre_classes,
                          **pre_epochs, **size)
        print(json.dumps({"pretrain_classes": args.pretrain_classes, "pretrain_accuracy": pre.metrics["accuracy"],
                          "seconds": round(time.perf_counter() - start, 1)}), flush=True)
        results = {}
        for augment in args.augment:
            for seed in args.seeds:
                common = dict(data="mnist5k", classes="5,6,7,8,9", train_per_class=20, model=args.model, seed=seed,
                              split_seed=seed, epochs=30, batch_size=20, val_fraction=0.0, augment=augment,
                              progress=False, **size)
                for mode in args.modes:
                    kw = MODES[mode]
                    start = time.perf_counter()
                    weights = {"weights": f"{tmp}/pre"} if mode != "scratch" else {}
                    r = optik.train(out=f"{tmp}/{augment}-{mode}-{seed}", **common, **weights, **kw)
                    results.setdefault(augment, {}).setdefault(mode, []).append(r.metrics["accuracy"])
                    print(json.dumps({"augment": augment, "seed": seed, "mode": mode,
                                      "test_accuracy": r.metrics["accuracy"], "n_test": r.metrics["n"],
                                      "seconds": round(time.perf_counter() - start, 1)}), flush=True)

    def gain(v, r):
        return round(100 * (statistics.mean(v) - statistics.mean(r["scratch"])), 1) if "scratch" in r else None

    summary = {aug: {mode: {"mean": round(statistics.mean(v), 4), "runs": v, "gain_over_scratch_points": gain(v, r)}
                     for mode, v in r.items()} for aug, r in results.items()}
    print(json.dumps({"benchmark": "transfer_few_shot", "model": args.model, "input_size": args.input_size,
                      "pretrain_classes": args.pretrain_classes, "threads": torch.get_num_threads(),
                      "machine": platform.machine(), "torch": str(torch.__version__), "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
