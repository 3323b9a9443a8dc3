"""Trained generative models as self-describing modules: sample, encode, decode, interpolate; save and load.

A run folder holds ``model.safetensors`` (the generator's averaged weights, or the whole VAE) and ``model.json``
(enough to rebuild it). The discriminator lives only in the training checkpoints.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from optik.core import seed as random
from optik.core.errors import CheckpointError, ConfigError, RunError
from optik.core.images import check_images
from optik.core.modes import eval_mode
from optik.generative.latent import LatentMixture
from optik.generative.nets import VAE, Generator

WEIGHTS, META = "model.safetensors", "model.json"


class GenerativeModel(nn.Module):
    """Common to GAN and VAE models: the image shape, class names, and how to draw latent codes."""

    kind = ""

    def __init__(self, *, latent_dim: int, channels: int, image_size: Sequence[int], classes: Sequence[str],
                 arch: dict[str, Any]):
        super().__init__()
        self.latent_dim, self.channels = latent_dim, channels
        self.image_size = tuple(int(s) for s in image_size)
        self.classes, self.arch = list(classes), dict(arch)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def conditional(self) -> bool:
        return False

    def latents(self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        """``n`` codes from the prior ``N(0, I)`` (times ``temperature``), drawn on the CPU (same on any device)."""
        return random.normal((n, self.latent_dim), generator=generator, device="cpu").mul_(temperature).to(self.device)

    def labels(self, n: int, labels: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor | None:
        """Class labels for a conditional model: the given ones, or ``0, 1, ..., K-1, 0, 1, ...`` (balanced)."""
        if not self.conditional:
            if labels is not None:
                raise ConfigError("expected no labels: this model is not class-conditional (train with "
                                  "--conditional)")
            return None
        y = torch.arange(n) % len(self.classes) if labels is None else torch.as_tensor(labels).long().flatten()
        if len(y) != n or int(y.min()) < 0 or int(y.max()) >= len(self.classes):
            raise ConfigError(f"expected {n} labels in [0, {len(self.classes)}), got {y.tolist()[:10]}")
        return y.to(self.device)

    @torch.no_grad()
    def sample(self, n: int, *, generator: torch.Generator | None = None, labels=None, temperature: float = 1.0,
               batch_size: int = 500) -> torch.Tensor:
        """``n`` images ``N x C x H x W`` in [0, 1] from the prior, in batches (bounded memory)."""
        z = self.latents(n, generator=generator, temperature=temperature)
        y = self.labels(n, labels)
        with eval_mode(self):
            return torch.cat([self.generate(z[i:i + batch_size], None if y is None else y[i:i + batch_size])
                              for i in range(0, n, batch_size)])

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"format": "optik.Generative/1", "kind": self.kind, "arch": self.arch, "classes": self.classes,
                "channels": self.channels, "image_size": list(self.image_size), "latent_dim": self.latent_dim,
                "num_parameters": sum(p.numel() for p in self.parameters())}


class GANModel(GenerativeModel):
    """A trained GAN generator (the exponential moving average of its weights when training kept one)."""

    kind = "gan"

    def __init__(self, generator: Generator, **kw: Any):
        super().__init__(**kw)
        self.generator = generator

    @property
    def conditional(self) -> bool:
        return self.generator.num_classes > 0

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(z, y)


class VAEModel(GenerativeModel):
    """A trained VAE: sample, encode to the posterior mean, decode to pixel means.

    Sample codes come from ``mixture`` (a :class:`~optik.generative.latent.LatentMixture` fitted to the training
    images' codes after training) when the model has one, else from the model's prior (``N(0, I)`` or its learned
    mixture prior); :meth:`draw_codes_from` switches between ``"fitted"`` and ``"prior"``.
    """

    kind = "vae"
    CODE_SOURCES = ("fitted", "prior")

    def __init__(self, vae: VAE, *, mixture: LatentMixture | None = None, **kw: Any):
        super().__init__(**kw)
        self.vae, self.mixture = vae, mixture
        self.codes_from = "fitted" if mixture is not None else "prior"

    def fit_mixture(self, images: torch.Tensor, components: int, *, seed: int = 0, batch_size: int = 1000
                    ) -> "VAEModel":
        """Fit the latent mixture (``components`` Gaussians) to the posterior means of ``images`` (``uint8``
        ``N x C x H x W``, or a data split: the training split) and draw sample codes from it. Training does this once, at the
        end, on the weights kept; its sample-quality checks draw codes from the prior (a refit at each check,
        scikit-learn's EM, about 1 s for 3,600 codes, would cost more than the check itself)."""
        from optik.data.handles import image_batches

        codes = torch.cat([self.encode(x.to(self.device).float() / 255) for x in image_batches(images, batch_size)])
        self.mixture = LatentMixture.fit(codes, components, seed=seed).to(self.device)
        self.codes_from = "fitted"
        return self

    def draw_codes_from(self, source: str) -> "VAEModel":
        """Draw sample codes from the ``"fitted"`` latent mixture or from the model's ``"prior"``."""
        if source not in self.CODE_SOURCES:
            raise ConfigError(f"expected codes from one of {list(self.CODE_SOURCES)}, got {source!r}")
        if source == "fitted" and self.mixture is None:
            raise ConfigError("expected a VAE with a fitted latent mixture for codes from 'fitted', but this one "
                              "has none (trained with latent_mixture=0); use 'prior'")
        self.codes_from = source
        return self

    def latents(self, n: int, *, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        if self.codes_from == "fitted" and self.mixture is not None:
            return self.mixture.sample(n, generator=generator, temperature=temperature).to(self.device)
        if self.vae.prior is not None:
            return self.vae.prior.sample(n, generator=generator, temperature=temperature).to(self.device)
        return super().latents(n, generator=generator, temperature=temperature)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "latent_mixture": self.mixture.components if self.mixture is not None else 0}

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return torch.sigmoid(self.vae.decode(z))

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior means ``N x latent_dim`` of images ``N x C x H x W`` in [0, 1] (float)."""
        check_images(x, channels=self.channels, size=self.image_size, check_range=False)
        with eval_mode(self):
            return self.vae.encode(x.to(device=self.device, dtype=next(self.vae.parameters()).dtype))[0]

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoded posterior means: the VAE's reconstructions, in [0, 1]."""
        return self.sample_from(self.encode(x))

    @torch.no_grad()
    def sample_from(self, z: torch.Tensor) -> torch.Tensor:
        with eval_mode(self):
            return self.generate(z.to(self.device))


def build_generative(meta: dict[str, Any]) -> GenerativeModel:
    """Rebuild a model from its ``model.json`` description (weights not loaded)."""
    arch, common = meta["arch"], {k: meta[k] for k in ("latent_dim", "channels", "image_size", "classes")}
    if meta["kind"] == "gan":
        return GANModel(Generator(**arch), arch=arch, **common)
    if meta["kind"] == "vae":
        k = int(meta.get("latent_mixture", 0))
        return VAEModel(VAE(**arch), mixture=LatentMixture(k, common["latent_dim"]) if k else None, arch=arch,
                        **common)
    raise CheckpointError(f"expected a generative model of kind gan or vae, got {meta['kind']!r}")


def save_generative(model: GenerativeModel, folder: str | os.PathLike) -> Path:
    from optik.models.io import save_model

    return save_model(model, folder)


def is_generative_run(folder: str | os.PathLike) -> bool:
    meta = Path(folder) / META
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text(encoding="utf-8")).get("format") == "optik.Generative/1"
    except json.JSONDecodeError:
        return False


def load_generative(folder: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> GenerativeModel:
    """The trained model of a `optik gan train` / `optik vae train` run folder."""
    from optik.models.io import load_weights

    folder = Path(folder)
    if not folder.is_dir():
        raise RunError(f"expected a run folder of `optik gan train` / `optik vae train`, got {str(folder)!r}, "
                       f"which does not exist")
    for name in (META, WEIGHTS):
        if not (folder / name).is_file():
            raise RunError(f"expected a generative run folder with {META} and {WEIGHTS}, but {str(folder)!r} has "
                           f"no {name}; did its training finish? (`--resume {folder}` continues it)")
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        if meta.get("format") != "optik.Generative/1":
            raise CheckpointError(f"{folder / META} describes a {meta.get('format', 'unknown')} model, not a GAN or "
                                  f"VAE (made by `optik gan train` / `optik vae train`)")
        model = build_generative(meta)
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{folder / META} is not a valid optik generative model description ({e!r})") from None
    load_weights(model, folder / WEIGHTS)
    return model.to(map_location).eval()
