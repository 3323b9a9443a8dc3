"""`optik demo`: the main job on built-in data, start to finish, in a few minutes on a laptop CPU."""
from __future__ import annotations

import time
from pathlib import Path

import torch
from PIL import Image


def run_demo(*, out: str | None = None, console=None, progress: bool = True) -> Path:
    """Train the default CNN on mnist5k, evaluate it on the 1,000 test images, predict a few PNG files,
    attack it (PGD robustness curve and gallery under ``attacks/pgd/``), and train a small VAE for 30 seconds
    whose samples are scored with the CNN as FID feature extractor (under ``vae/``); then write ``report.html``."""
    import optik
    from optik.console import print_quality, print_report, print_robustness
    from optik.data import load_dataset, split_dataset

    say = console.print if console is not None else print
    say("[bold]optik demo[/]: train the default CNN on mnist5k (5,000 real MNIST digits), evaluate, predict")
    start = time.perf_counter()
    result = optik.train(data="mnist5k", out=out, progress=progress)
    say(f"trained in {time.perf_counter() - start:.0f} s")
    print_report(result.metrics, console) if console is not None else say(result.metrics["accuracy"])

    # Predict from image files, as a user would: write the first test image of each digit as a PNG, classify them.
    ds = load_dataset("mnist5k")
    test = split_dataset(ds, val_fraction=0.1, test_fraction=0.2, seed=0)["test"]
    test = torch.stack([test[ds.labels[test] == c][0] for c in range(len(ds.classes))])
    folder = result.run_dir / "demo_images"
    folder.mkdir(exist_ok=True)
    for i in test.tolist():
        Image.fromarray(ds.images[i, 0].numpy()).save(folder / f"test{i:04d}_label{ds.classes[ds.labels[i]]}.png")
    say(f"\npredictions for {folder}/*.png (top 3):")
    for r in optik.predict(result.run_dir, [folder], top_k=3):
        tops = "  ".join(f"{t['class']} {t['probability']:.3f}" for t in r["top_k"])
        say(f"  {Path(r['path']).name}: {tops}")

    # Accuracy is not robustness: the same model under PGD, pixels moved by at most eps.
    say("\nattack: PGD (Linf, 10 steps) on 500 test images; accuracy as the perturbation grows")
    report = optik.attack(result.run_dir, method="pgd", eps=[0, 0.05, 0.1, 0.15, 0.2], n=500, steps=10)
    print_robustness(report, console) if console is not None else say(report["per_eps"])

    # Models that generate: a VAE for 30 seconds, its samples scored with the classifier just trained as the
    # FID feature extractor (no extra training, no download).
    from optik import generative_api as gen

    say("\ngenerate: a VAE trained for 30 s on the same digits; FID with the classifier above as feature extractor")
    vae = gen.train_vae(data="mnist5k", max_minutes=0.5, schedule="cosine", quality_every=0, keep="last",
                        features=str(result.run_dir), out=result.run_dir / "vae", progress=False)
    print_quality(vae.metrics, console) if console is not None else say(vae.metrics["test"]["fid"])
    say(f"samples: {vae.run_dir / 'figures' / 'samples.png'}  (optik sample {vae.run_dir} --n 64 --out grid.png)")
    # Everything above on one page: curves, metrics with intervals, calibration, mistakes, Grad-CAM, the attack, the
    # VAE's samples.
    from optik.report import write_report

    report = write_report(result.run_dir)
    say(f"\nrun folder: [bold]{result.run_dir}[/]  (tensorboard --logdir {result.run_dir / 'tensorboard'})")
    say(f"report: [bold]{report}[/]  (open it in a browser; `optik serve {result.run_dir}` to try the model live)")
    return result.run_dir
