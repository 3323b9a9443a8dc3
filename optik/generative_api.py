"""The generative commands a notebook user calls: train a GAN or VAE, sample, interpolate, measure quality."""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from optik.core import seed as random
from optik.core.config import data_options, resolve_config
from optik.core.errors import ConfigError
from optik.core.io import (RunLock, atomic_write, input_paths, new_run_dir, provenance,
                           resume_checkpoint, write_json, write_yaml)
from optik.core.seed import generator, seed_everything
from optik.data.handles import DataHandle, at_most, write_splits
from optik.data.registry import open_data
from optik.data.splits import random_subset
from optik.generative.metrics import (ClassifierFeatures, FeatureStats, InceptionFeatures, extract_features,
                                      frechet_distance, sample_quality)
from optik.generative.models import GenerativeModel, VAEModel, save_generative
from optik.runs import Run
from optik.training.config import GANConfig, GenerativeConfig, VAEConfig

log = logging.getLogger("optik")
KINDS = {"gan": GANConfig, "vae": VAEConfig}
# Sets whose cost grows with the data are capped (seeded draws, in the split's order): FID's reference statistics
# and the feature scale, and the final test metrics (as many samples as test images, up to this many).
MAX_REFERENCE = 50_000
MAX_TEST = 10_000
INTERPOLATIONS = ("slerp", "lerp")  # paths through the latent space: spherical (for Gaussian codes), straight


@dataclass
class GenerativeResult:
    run_dir: Path
    model: GenerativeModel
    metrics: dict  # as in metrics.json


# ------------------------------------------------------------------------------------------------ config
def make_generative_config(kind: str, config: str | os.PathLike | dict | GenerativeConfig | None = None,
                           **overrides: Any) -> GenerativeConfig:
    """A GANConfig / VAEConfig from a YAML file, a dict or a config, with keyword overrides on top."""
    if kind not in KINDS:
        raise ConfigError(f"expected a generative model kind in {sorted(KINDS)}, got {kind!r}")
    return resolve_config(KINDS[kind], config, **overrides)


def open_generative_data(cfg: GenerativeConfig) -> DataHandle:
    """The data a generative config names, as split handles: in memory, or streamed from files or shards when
    they do not fit ``max_memory_gb`` (or with ``stream``)."""
    return open_data(**data_options(cfg))


# ------------------------------------------------------------------------------------------------ features
def cache_dir() -> Path:
    return Path(os.environ.get("OPTIK_CACHE") or Path.home() / ".cache" / "optik")


def feature_extractor(features: str | None, cfg: GenerativeConfig, data: DataHandle, *, progress: bool = False):
    """The extractor for sample quality, its scale fitted on the training split (at most ``MAX_REFERENCE`` of its
    images), and the classifier for class histograms (None for Inception).

    ``features``: an optik classification run folder, ``inception:PATH``, or None for the default: an optik CNN
    trained once on the same data and split (about 1.5 minutes for mnist5k on 2 CPU cores), cached under
    ``$OPTIK_CACHE/features`` (default ``~/.cache/optik``).
    """
    from optik.api import load

    if features and features.startswith("inception:"):
        extractor, classifier = InceptionFeatures(features.removeprefix("inception:")), None
    else:
        run = Path(features) if features else _default_feature_run(cfg, progress=progress)
        classifier = load(run)
        if classifier.in_channels != data.channels:
            raise ConfigError(f"expected a feature classifier for {data.channels}-channel images, got {run} made for "
                              f"{classifier.in_channels}")
        extractor = ClassifierFeatures(classifier).fit_scale(at_most(data.splits["train"], MAX_REFERENCE,
                                                                     seed=cfg.split_seed))
        if classifier.classes != data.classes:
            log.warning("the feature classifier %s was trained on other classes (%s) than %s has (%s): FID, KID and "
                        "precision / recall use features it never learned for this data, and there is no class "
                        "histogram; compare such figures only with others made with the same classifier", run,
                        ", ".join(classifier.classes[:5]), data.name, ", ".join(data.classes[:5]))
            classifier = None  # its classes say nothing about this data's
    return extractor, classifier


def _default_feature_run(cfg: GenerativeConfig, *, progress: bool) -> Path:
    from optik.api import train as train_classifier

    where = str(Path(cfg.data).resolve()) if Path(cfg.data).exists() else cfg.data
    key = repr((where, cfg.classes, cfg.image_size, cfg.val_fraction, cfg.test_fraction, cfg.split_seed, "cnn"))
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(cfg.data).name)
    folder = cache_dir() / "features" / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:10]}"
    if (folder / "model.safetensors").is_file():
        return folder
    log.info("training the feature classifier for FID on %s (once; cached in %s)", cfg.data, folder)
    tmp = folder.with_name(folder.name + ".partial")
    train_classifier(data=cfg.data, classes=cfg.classes, image_size=cfg.image_size, val_fraction=cfg.val_fraction,
                     test_fraction=cfg.test_fraction, split_seed=cfg.split_seed, strict=cfg.strict, stream=cfg.stream,
                     max_memory_gb=cfg.max_memory_gb, workers=cfg.workers, out=tmp, overwrite=True,
                     progress=progress)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return folder


# ------------------------------------------------------------------------------------------------ train
def train_gan(config=None, *, out=None, overwrite: bool = False, resume=None, progress: bool = True,
              **overrides: Any) -> GenerativeResult:
    """Train a GAN (see :class:`optik.training.config.GANConfig`) into a run folder; return its model and metrics."""
    return _train("gan", config, out=out, overwrite=overwrite, resume=resume, progress=progress, **overrides)


def train_vae(config=None, *, out=None, overwrite: bool = False, resume=None, progress: bool = True,
              **overrides: Any) -> GenerativeResult:
    """Train a VAE (see :class:`optik.training.config.VAEConfig`) into a run folder; return its model and metrics."""
    return _train("vae", config, out=out, overwrite=overwrite, resume=resume, progress=progress, **overrides)


def _train(kind: str, config, *, out, overwrite: bool, resume, progress: bool, **overrides: Any) -> GenerativeResult:
    checkpoint = None
    if resume is not None:
        opened = Run.open(resume, finished=False)
        run = opened.path
        if opened.kind != kind:
            raise ConfigError(f"cannot resume {str(run)!r} with `optik {kind} train`: it was made by "
                              f"`optik {opened.command}`")
        checkpoint = resume_checkpoint(run, "last")
        cfg = opened.config
        if overrides:
            raise ConfigError(f"cannot change {sorted(overrides)} when resuming {str(run)!r}; start a new run")
    else:
        cfg = make_generative_config(kind, config, **overrides)
    seed_everything(cfg.seed)
    data = open_generative_data(cfg)
    extractor, classifier = (feature_extractor(cfg.features, cfg, data, progress=progress)
                             if cfg.quality_every or cfg.features else (None, None))
    if resume is None:
        prefix = f"{kind}-{cfg.data if cfg.data.replace('-', '').isalnum() else Path(cfg.data).stem}"
        run = new_run_dir(out, prefix=prefix, overwrite=overwrite, protect=input_paths(cfg))
    with RunLock(run):  # no second training into this folder meanwhile
        if resume is None:
            write_yaml(run / "config.yaml", {"command": f"{kind} train", **provenance(), "config": cfg.to_dict(),
                                             "data": data.summary()})
            write_splits(run / "splits.csv", data, group_column=cfg.group_column)
        return _fit_generative_run(kind, cfg, data, run, checkpoint=checkpoint, extractor=extractor,
                                   classifier=classifier, progress=progress)


def _fit_generative_run(kind: str, cfg, data: DataHandle, run: Path, *, checkpoint: Path | None, extractor,
                        classifier, progress: bool) -> GenerativeResult:
    from optik.training.callbacks import SampleMonitor
    from optik.training.datamodule import SplitDataModule
    from optik.training.generative import GANTask, VAETask
    from optik.training.trainer import fit_generative

    log.info("%s %s: %s; run folder %s", "resuming" if checkpoint else "training", kind.upper(), data.describe(),
             run)
    task = (GANTask if kind == "gan" else VAETask)(cfg, channels=data.channels, image_size=data.image_size,
                                                   classes=data.classes)
    train = data.splits["train"]
    reference = (FeatureStats.from_features(extract_features(extractor, at_most(train, MAX_REFERENCE,
                                                                                 seed=cfg.split_seed)))
                 if extractor is not None else None)
    monitor = SampleMonitor(extractor, reference, every=cfg.quality_every, n=cfg.quality_samples, seed=cfg.seed)
    val = data.splits.get("val") if kind == "vae" else None
    datamodule = SplitDataModule(train, val, batch_size=cfg.batch_size, seed=cfg.seed, workers=cfg.workers)
    start, batches_before = time.perf_counter(), int(task.batches_done)
    trainer = fit_generative(task, datamodule, cfg, run, checkpoint=checkpoint, progress=progress, monitor=monitor)
    seconds = time.perf_counter() - start
    model = task.generative_model().cpu()
    if kind == "vae" and cfg.latent_mixture:
        model.fit_mixture(train, cfg.latent_mixture, seed=cfg.seed)  # on the kept weights
    save_generative(model, run)
    metrics = _final_metrics(model, task, data, extractor, classifier, cfg)
    done = task.final_counts  # the end of training, not the best epoch's (whose weights the task now holds)
    metrics["training"] = {"epochs": trainer.current_epoch, **done, "seconds_this_session": round(seconds, 2),
                           "steps_per_second": round((done["steps"] - batches_before) / seconds, 2)}
    metrics["quality_history"] = monitor.history
    write_json(run / "metrics.json", metrics)
    _write_figures(model, data, run, seed=cfg.seed)
    data.warn_skipped()
    return GenerativeResult(run, model, metrics)


@torch.no_grad()
def _final_metrics(model: GenerativeModel, task, data: DataHandle, extractor, classifier, cfg) -> dict:
    """Sample quality of as many samples as test images (up to ``MAX_TEST``) against them, the real-vs-real floor
    (as many training images), and for a VAE the test ``-ELBO`` (over the whole test split)."""
    whole_test = data.splits["test"]
    test = at_most(whole_test, MAX_TEST, seed=cfg.seed)
    n = len(test)
    out: dict[str, Any] = {"data": data.name, "kind": model.kind, "n_test": n}
    if extractor is not None:
        out["test"] = _test_quality(model, test, extractor, classifier, seed=cfg.seed)
        if isinstance(model, VAEModel) and model.mixture is not None:  # what codes from the model's prior give
            out["test_prior_codes"] = _test_quality(model.draw_codes_from("prior"), test, extractor, classifier,
                                                    seed=cfg.seed)
            model.draw_codes_from("fitted")
        out["codes_from"] = getattr(model, "codes_from", "prior")
        train = data.splits["train"]
        pick = random.randperm(len(train), generator=generator(cfg.seed, "floor"))[:n]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            out["fid_floor_train_vs_test"] = frechet_distance(
                FeatureStats.from_features(extract_features(extractor, train.subset(pick))),
                FeatureStats.from_features(extract_features(extractor, test)))
    if isinstance(model, VAEModel):
        out["test_neg_elbo"] = _neg_elbo(task, whole_test, seed=cfg.seed)
    return out


def _test_quality(model: GenerativeModel, test, extractor, classifier, *, seed: int) -> dict:
    """As many samples as test images (codes seeded by ``seed``) against them: what training reports in
    ``metrics.json`` and `optik quality` reproduces."""
    fake = model.sample(len(test), generator=generator(seed, "final-samples"))
    return sample_quality(test, fake, extractor=extractor, classifier=classifier, seed=seed)


@torch.no_grad()
def _neg_elbo(task, images, *, seed: int, batch_size: int = 500) -> dict:
    """Mean per-image ``-ELBO``, reconstruction NLL and KL in nats (one posterior sample per image, seeded) over
    ``images`` (a tensor or a data split)."""
    from optik.data.handles import image_batches

    task.eval().cpu()
    g = generator(seed, "test-elbo")
    nll_sum = kl_sum = 0.0
    n = 0
    for batch in image_batches(images, batch_size):
        x = batch.float() / 255
        n += len(x)
        nll, kl = task._elbo_terms(x, random.normal((len(x), task.cfg.latent_dim), generator=g, device=x.device))
        nll_sum, kl_sum = nll_sum + nll.sum().item(), kl_sum + kl.sum().item()
    return {"neg_elbo": (nll_sum + kl_sum) / n, "nll": nll_sum / n, "kl": kl_sum / n}


def _write_figures(model: GenerativeModel, data: DataHandle, run: Path, *, seed: int) -> None:
    from optik.evaluation.figures import save_figure
    from optik.generative.figures import image_grid_figure, interpolation_figure

    save_figure(image_grid_figure(model.sample(64, generator=generator(seed, "grid")), title="samples"),
                run / "figures" / "samples.png")
    save_figure(interpolation_figure(model, seed=seed, method="slerp"), run / "figures" / "interpolation.png")
    if isinstance(model, VAEModel):
        from optik.generative.figures import reconstruction_figure

        x = data.splits["test"].take(torch.arange(min(16, len(data.splits["test"])))).float() / 255
        save_figure(reconstruction_figure(x, model.reconstruct(x)), run / "figures" / "reconstructions.png")


# ------------------------------------------------------------------------------------------------ use
def load_generator(run: str | os.PathLike, *, device: str | torch.device = "cpu") -> GenerativeModel:
    """The trained GAN generator or VAE of a run folder."""
    return Run.open(run, kind="generative").model(device)


def sample(run: str | os.PathLike | GenerativeModel, *, n: int = 64, out: str | os.PathLike | None = None,
           seed: int = 0, labels: Sequence[int] | None = None, temperature: float = 1.0,
           codes: str | None = None) -> torch.Tensor:
    """``n`` images ``N x C x H x W`` in [0, 1] from a trained model; ``out`` ``.png`` writes a grid, ``.npz``
    writes ``images`` (``uint8``, ``N x C x H x W``) and ``labels`` (conditional models).

    ``codes`` (VAE): draw them from the latent mixture ``"fitted"`` after training (the default when the model
    has one) or from the model's ``"prior"``.
    """
    model = run if isinstance(run, GenerativeModel) else load_generator(run)
    if n < 1:
        raise ConfigError(f"expected --n >= 1, got {n}")
    if temperature <= 0:
        raise ConfigError(f"expected a temperature > 0, got {temperature}")
    before = getattr(model, "codes_from", None)
    _draw_codes_from(model, codes)
    try:
        x = model.sample(n, generator=generator(seed, "sample"), labels=labels, temperature=temperature).cpu()
    finally:
        if isinstance(model, VAEModel):
            model.draw_codes_from(before)
    if out is not None:
        _write_samples(Path(out), x, model.labels(n, labels))
    return x


def _draw_codes_from(model: GenerativeModel, codes: str | None) -> None:
    """Where a VAE draws sample codes from (``"fitted"`` / ``"prior"``); a GAN has only its prior."""
    if codes is None:
        return
    if isinstance(model, VAEModel):
        model.draw_codes_from(codes)
    elif codes != "prior":
        raise ConfigError(f"expected codes from 'prior' for a {model.kind.upper()} (only a VAE has a fitted latent "
                          f"mixture), got {codes!r}")


def _write_samples(out: Path, x: torch.Tensor, labels: torch.Tensor | None) -> None:
    suffix = out.suffix.lower()
    if suffix == ".npz":
        arrays = {"images": (x * 255).round().clamp(0, 255).to(torch.uint8).numpy()}
        if labels is not None:
            arrays["labels"] = labels.cpu().numpy()
        atomic_write(out, lambda p: np.savez_compressed(open(p, "wb"), **arrays))
    elif suffix == ".png":
        from optik.evaluation.figures import save_figure
        from optik.generative.figures import image_grid_figure

        save_figure(image_grid_figure(x, title=f"{len(x)} samples"), out)
    else:
        raise ConfigError(f"expected --out ending in .png (a grid) or .npz (uint8 arrays), got {str(out)!r}")


def interpolate(run: str | os.PathLike | GenerativeModel, *, out: str | os.PathLike, method: str = "slerp",
                rows: int = 8, steps: int = 10, seed: int = 0) -> Path:
    """A figure of ``rows`` paths between random codes (``lerp`` or ``slerp``), ``steps`` images each.

    For a VAE, the paths run between the encodings of real test images, whose reconstructions close each row.
    """
    from optik.evaluation.figures import save_figure
    from optik.generative.figures import interpolation_figure

    if rows < 1 or steps < 2:
        raise ConfigError(f"expected rows >= 1 and steps >= 2 (a path has two ends), got rows={rows}, steps={steps}")
    if method not in INTERPOLATIONS:
        raise ConfigError(f"expected method 'slerp' or 'lerp', got {method!r}")
    model = run if isinstance(run, GenerativeModel) else load_generator(run)
    real = None
    if isinstance(model, VAEModel) and not isinstance(run, GenerativeModel):
        test = Run.open(run, kind="vae").data().splits["test"]
        real = test.take(random.randperm(len(test), generator=generator(seed, "pairs"))[:2 * rows]).float() / 255
    fig = interpolation_figure(model, seed=seed, method=method, rows=rows, steps=steps, real=real)
    return save_figure(fig, Path(out))


def quality(run: str | os.PathLike, *, n: int | None = None, features: str | None = None, seed: int = 0,
            codes: str | None = None) -> dict:
    """Sample quality of a trained run against its test split (FID, KID, precision / recall, class histogram);
    ``codes``: as for :func:`sample`."""
    opened = Run.open(run, kind="generative")
    run, cfg = opened.path, opened.config
    data = opened.data()
    extractor, classifier = feature_extractor(features or cfg.features, cfg, data)
    model = load_generator(run)
    _draw_codes_from(model, codes)
    if n is not None and n < 1:
        raise ConfigError(f"expected n >= 1 test images to compare with (or None: all), got {n}")
    whole = data.splits["test"]
    test = whole.subset(random_subset(torch.arange(len(whole)), n, seed=seed))
    report = {"run": str(run), "data": data.name, "codes_from": getattr(model, "codes_from", "prior"),
              **_test_quality(model, test, extractor, classifier, seed=seed)}
    write_json(run / "quality.json", report)
    return report
