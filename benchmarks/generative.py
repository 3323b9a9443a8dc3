"""GAN and VAE on mnist5k under a wall-clock budget: optik against plain PyTorch loops, in one run (issue #5).

Sample quality is the FID of 1,000 samples against the 1,000 test images, on the penultimate features (before
the ReLU) of optik's default CNN trained on the mnist5k train split, scaled to unit RMS over the train images.
The floor is the FID of 1,000 real training images against the same test images.

    python benchmarks/generative.py --minutes 3                # both models, both sides
    python benchmarks/generative.py --minutes 3 --only gan --optik-gan conditional=true

The plain references are written here from scratch, as a person would from the DCGAN paper and PyTorch's DCGAN
example (BatchNorm, Adam 2e-4 / 0.5, binary cross-entropy) and from Kingma & Welling (a conv VAE, Bernoulli
likelihood, Adam 1e-3). Both sides get batch 64, the same split and the same budget; throughput is batches per
second of wall-clock training time (optik's includes its FID checks, sample grids, validation and checkpoints).
The plain VAE runs again after optik's (A-B-A): optik's VAE throughput is compared with the mean of both plain runs,
since this machine's speed drifts within minutes.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import optik  # noqa: E402
from optik import generative_api as gen  # noqa: E402
from optik.core.config import from_dict  # noqa: E402
from optik.data import load_dataset, split_dataset  # noqa: E402
from optik.generative.metrics import ClassifierFeatures, class_histogram, extract_features, fid  # noqa: E402
from optik.training.config import GANConfig, VAEConfig  # noqa: E402


# ------------------------------------------------------------------------------------------------ references
class PlainG(nn.Module):
    def __init__(self, z=100):
        super().__init__()
        self.net = nn.Sequential(
            nn.ConvTranspose2d(z, 256, 7, 1, 0, bias=False), nn.BatchNorm2d(256), nn.ReLU(True),
            nn.ConvTranspose2d(256, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(True),
            nn.ConvTranspose2d(128, 1, 4, 2, 1), nn.Tanh())

    def forward(self, z):
        return self.net(z[:, :, None, None]) * 0.5 + 0.5


class PlainD(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2, True),
            nn.Conv2d(64, 128, 4, 2, 1, bias=False), nn.BatchNorm2d(128), nn.LeakyReLU(0.2, True),
            nn.Conv2d(128, 1, 7, 1, 0))

    def forward(self, x):
        return self.net(x * 2 - 1).flatten()


class PlainVAE(nn.Module):
    def __init__(self, z=16):
        super().__init__()
        self.enc = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(True), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(True),
                                 nn.Flatten(), nn.Linear(64 * 49, 256), nn.ReLU(True), nn.Linear(256, 2 * z))
        self.dec = nn.Sequential(nn.Linear(z, 256), nn.ReLU(True), nn.Linear(256, 64 * 49), nn.ReLU(True),
                                 nn.Unflatten(1, (64, 7, 7)), nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(True),
                                 nn.ConvTranspose2d(32, 1, 4, 2, 1))

    def terms(self, x, eps):
        mu, logvar = self.enc(x).chunk(2, 1)
        logits = self.dec(mu + eps * (0.5 * logvar).exp())
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        kl = 0.5 * (mu.square() + logvar.exp() - 1 - logvar).sum(1)
        return nll, kl


def _batches(x, batch, seed):
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x) - batch + 1, batch):
            yield x[perm[i:i + batch]]


def plain_gan(train, seconds, seed):
    torch.manual_seed(seed)
    G, D = PlainG(), PlainD()
    og = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    od = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    steps, start = 0, time.perf_counter()
    for x in _batches(train, 64, seed):
        fake = G(torch.randn(64, 100))
        d_loss = F.softplus(-D(x)).mean() + F.softplus(D(fake.detach())).mean()
        od.zero_grad()
        d_loss.backward()
        od.step()
        g_loss = F.softplus(-D(fake)).mean()
        og.zero_grad()
        g_loss.backward()
        og.step()
        steps += 1
        if time.perf_counter() - start > seconds:
            break
    elapsed = time.perf_counter() - start
    G.eval()
    with torch.no_grad():
        samples = G(torch.randn(1000, 100, generator=torch.Generator().manual_seed(seed + 1)))
    return samples, steps, elapsed


def plain_vae(train, test, seconds, seed):
    torch.manual_seed(seed)
    vae = PlainVAE()
    opt = torch.optim.Adam(vae.parameters(), 1e-3)
    steps, start = 0, time.perf_counter()
    for x in _batches(train, 64, seed):
        nll, kl = vae.terms(x, torch.randn(64, 16))
        loss = (nll + kl).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        steps += 1
        if time.perf_counter() - start > seconds:
            break
    elapsed = time.perf_counter() - start
    with torch.no_grad():
        nll, kl = vae.terms(test, torch.randn(len(test), 16, generator=torch.Generator().manual_seed(seed)))
        samples = torch.sigmoid(vae.dec(torch.randn(1000, 16, generator=torch.Generator().manual_seed(seed + 1))))
    return samples, steps, elapsed, (nll + kl).mean().item()


def step_speed(steps: int = 200, rounds: int = 3) -> dict:
    """Bare training steps per second (batch 64, no framework, no checks) of the plain VAE and of optik's VAE
    module as `optik vae train` builds it by default (width, BatchNorm, mixture prior, shifts, fused Adam,
    channels-last), and of the same at width 32 (the earlier default): separates the cost of the architecture from
    the cost of the training loop. Interleaved ``rounds`` times (this machine's speed drifts); means reported."""
    from optik.core.config import from_dict
    from optik.generative.diffaug import translate
    from optik.training.generative import VAETask

    cfg = from_dict(VAEConfig, {})
    x, g = torch.rand(64, 1, 28, 28), torch.Generator().manual_seed(0)

    def optik_step(width):
        # The task's own ELBO and optimizer; what Lightning adds around them is what this leaves out.
        task = VAETask(from_dict(VAEConfig, {"width": width}), channels=1, image_size=(28, 28),
                       classes=[str(d) for d in range(10)]).to(memory_format=torch.channels_last)
        opt = task.configure_optimizers()

        def step():
            xx = translate(x, torch.rand((64, 2), generator=g), pixels=cfg.shift_pixels)
            nll, kl = task._elbo_terms(xx, torch.randn(64, cfg.latent_dim, generator=g))
            opt.zero_grad(set_to_none=True)
            (nll + kl).mean().backward()
            opt.step()
        return step

    plain = PlainVAE()
    plain_opt = torch.optim.Adam(plain.parameters(), 1e-3)

    def plain_step():
        nll, kl = plain.terms(x, torch.randn(64, 16))
        plain_opt.zero_grad()
        (nll + kl).mean().backward()
        plain_opt.step()

    cases = {"plain_vae": plain_step, f"optik_vae_width_{cfg.width}": optik_step(cfg.width),
             "optik_vae_width_32": optik_step(32)}
    totals = dict.fromkeys(cases, 0.0)
    for step in cases.values():
        for _ in range(20):
            step()
    for _ in range(rounds):
        for name, step in cases.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            totals[name] += steps / (time.perf_counter() - start) / rounds
    return {k: round(v, 2) for k, v in totals.items()}


# ------------------------------------------------------------------------------------------------ main
def _overrides(pairs):
    return dict(p.split("=", 1) for p in pairs)


def main() -> None:
    # Over 60 lines on purpose: the sides run in a fixed order (plain, optik, plain again) in one process on one
    # machine state, and that order is the method; split up, it would be easy to reorder by accident.
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=3.0)
    p.add_argument("--only", choices=("gan", "vae", "all"), default="all")
    p.add_argument("--sides", choices=("plain", "optik", "both"), default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--features", help="classification run for FID (default: train optik's default CNN, cached)")
    p.add_argument("--optik-gan", nargs="*", default=[], help="GANConfig overrides, key=value")
    p.add_argument("--optik-vae", nargs="*", default=[], help="VAEConfig overrides, key=value")
    p.add_argument("--out", default="runs/bench-generative")
    p.add_argument("--no-plain-after", dest="plain_after", action="store_false",
                   help="skip the second plain VAE run after optik's (A-B-A throughput comparison)")
    p.add_argument("--step-speed", action="store_true", help="only time bare VAE steps (architecture cost)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.step_speed:
        print(json.dumps(step_speed(), indent=2))
        return
    out = Path(args.out)

    ds = load_dataset("mnist5k")
    splits = split_dataset(ds, val_fraction=0.1, test_fraction=0.2, seed=0)
    train_u8, test_u8 = ds.images[splits["train"]], ds.images[splits["test"]]
    train, test = train_u8.float() / 255, test_u8.float() / 255
    cfg = from_dict(GANConfig, {})
    feature_run = Path(args.features) if args.features else gen._default_feature_run(cfg, progress=False)
    classifier = optik.load(feature_run)
    extractor = ClassifierFeatures(classifier).fit_scale(train_u8)
    f_test = extract_features(extractor, test_u8)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(args.seed))[:len(test)]
    results = {"machine": f"{platform.machine()} {torch.get_num_threads()} threads", "torch": torch.__version__,
               "minutes": args.minutes, "feature_run": str(feature_run),
               "floor_fid_train_vs_test": fid(extract_features(extractor, train_u8[pick]), f_test)}
    print(f"floor: FID(1,000 train, 1,000 test) = {results['floor_fid_train_vs_test']:.3f}", flush=True)

    def score(samples):
        hist = class_histogram(classifier, samples)
        return {"fid": fid(extract_features(extractor, samples), f_test),
                "classes_at_least_5pct": len(ds.classes) - hist["num_missing"],
                "min_class_fraction": min(hist["fractions"].values())}

    seconds = args.minutes * 60
    if args.only in ("gan", "all"):
        if args.sides in ("plain", "both"):
            samples, steps, elapsed = plain_gan(train, seconds, args.seed)
            results["plain_gan"] = {"steps": steps, "it_per_s": steps / elapsed, **score(samples)}
            print("plain DCGAN", results["plain_gan"], flush=True)
        if args.sides in ("optik", "both"):
            r = gen.train_gan(out=out / "gan", overwrite=True, max_minutes=args.minutes, features=str(feature_run),
                              seed=args.seed, progress=False, **_overrides(args.optik_gan))
            results["optik_gan"] = _optik_summary(r, score, _overrides(args.optik_gan))
            print("optik GAN", results["optik_gan"], flush=True)
    if args.only in ("vae", "all"):
        if args.sides in ("plain", "both"):
            samples, steps, elapsed, neg_elbo = plain_vae(train, test, seconds, args.seed)
            results["plain_vae"] = {"steps": steps, "it_per_s": steps / elapsed, "test_neg_elbo": neg_elbo,
                                    **score(samples)}
            print("plain VAE", results["plain_vae"], flush=True)
        if args.sides in ("optik", "both"):
            r = gen.train_vae(out=out / "vae", overwrite=True, max_minutes=args.minutes, features=str(feature_run),
                              seed=args.seed, progress=False, **_overrides(args.optik_vae))
            results["optik_vae"] = {**_optik_summary(r, score, _overrides(args.optik_vae)),
                                    "test_neg_elbo": r.metrics["test_neg_elbo"]["neg_elbo"]}
            print("optik VAE", results["optik_vae"], flush=True)
        if args.sides == "both" and args.plain_after:
            # The plain loop again after optik's run (A-B-A): this machine's speed drifts by 10 % and more within
            # minutes, so the ratio is taken against the mean of the plain runs before and after.
            _, steps, elapsed, _ = plain_vae(train, test, seconds, args.seed)
            before = results["plain_vae"]["it_per_s"]
            results["plain_vae_after"] = {"steps": steps, "it_per_s": steps / elapsed}
            results["optik_vae"]["vs_plain_mean"] = results["optik_vae"]["it_per_s"] / ((before + steps / elapsed) / 2)
            print("plain VAE after", results["plain_vae_after"], "optik / mean plain:",
                  round(results["optik_vae"]["vs_plain_mean"], 3), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


def _optik_summary(result, score, overrides) -> dict:
    """Steps, throughput and the score of 1,000 fresh samples (seed 1, as the plain side's) of an optik run."""
    m = result.metrics
    return {"overrides": overrides, "steps": m["training"]["steps"], "it_per_s": m["training"]["steps_per_second"],
            **score(gen.sample(result.model, n=1000, seed=1))}


if __name__ == "__main__":
    main()
