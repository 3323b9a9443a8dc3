"""The default `optik train` on mnist5k: test accuracy and wall time per seed (bar: >= 98.5 % in <= 120 s).

    python benchmarks/default_training.py [--seeds 0 1 2]

Runs the same code path as `optik train --data mnist5k --seed S`, and reports the end-to-end wall time of
`optik.train` (data loading, training with validation each epoch, checkpoints, TensorBoard, test evaluation)
and the accuracy on the fixed 1,000-image test split.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time

import torch

import optik


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()
    rows = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            result = optik.train(data="mnist5k", seed=seed, out=f"{tmp}/run", progress=False)
            rows.append({"seed": seed, "test_accuracy": result.metrics["accuracy"],
                         "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({
        "benchmark": "default_training", "data": "mnist5k", "config": optik.TrainConfig().to_dict(),
        "threads": torch.get_num_threads(), "machine": platform.machine(), "torch": str(torch.__version__),
        "runs": rows, "min_accuracy": min(r["test_accuracy"] for r in rows),
        "max_seconds": max(r["seconds"] for r in rows),
    }, indent=2))


if __name__ == "__main__":
    main()
