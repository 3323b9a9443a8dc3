"""The configs of the training commands, composed of sections; each is saved resolved into a run's ``config.yaml``.

    TrainConfig = DataConfig + ModelConfig + OptimConfig + AugmentOptions + AdversarialConfig + ClusterConfig
                  + the run's own options (few-shot subset, seed, early stopping, checkpoints, weights kept)
    GANConfig, VAEConfig = DataConfig + HardwareConfig + GenerativeConfig's options + their model's

A section is a frozen dataclass that owns its fields, help texts and checks, in the package that owns the concern:
data and hardware in :mod:`optik.core.config`, the augmentation knobs in :mod:`optik.augment.presets`, the model in
:mod:`optik.models.config`, optimisation and adversarial training here. A config *inherits* from its sections
(dataclass multiple inheritance) rather than holding them as attributes, because that keeps everything flat that
users and the package rely on: ``cfg.lr`` and ``cfg.rotation_range`` as before; ``dataclasses.fields(TrainConfig)``
is the list of CLI flags and YAML keys, one to one, with no translation table; ``to_dict()`` is the same flat mapping
``config.yaml`` has always stored, so runs made before sections existed resume and evaluate, and older optik reads
runs made now. Nested sections would need 57 forwarding properties and a flattening step in ``from_dict``,
``to_dict`` and the CLI, three more places to keep in step.

How the composition works:

- dataclasses collect fields from the *last* base to the first, then the class's own: bases are listed last section
  first, so ``config.yaml`` and ``--help`` read data, model, optimisation, augmentation, adversarial training,
  hardware, then the run's own options. (The key order differs from the flat class of before; the key set does not,
  and every reader takes keys by name.)
- each section's ``__post_init__`` calls ``super().__post_init__()`` and then checks its own fields. The MRO visits
  every section once; :class:`optik.core.config.Section`, at its end, first checks every number of the whole config
  (finite, under its field's bound). A composed config fills in the defaults that depend on several sections before
  calling ``super()``, and checks what spans sections after.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from optik.augment.presets import AugmentOptions
from optik.core.config import ClusterConfig, DataConfig, HardwareConfig, Section, option, require
from optik.models.config import ModelConfig

SCHEDULES = ("onecycle", "cosine", "constant")
OPTIMIZERS = ("sgd", "adamw")
ADVERSARIAL_METHODS = (None, "pgd", "fgsm-rs", "trades")
GAN_LOSSES = ("nonsaturating", "minimax", "hinge")
LIKELIHOODS = ("bernoulli", "gaussian")

# Options left out (None) take these values; with adversarial training, the recipe measured in benchmarks/README.md
STANDARD_DEFAULTS = {"label_smoothing": 0.1, "augment": "default"}
ADVERSARIAL_DEFAULTS = {"label_smoothing": 0.0, "augment": "none"}


# ------------------------------------------------------------------------------------------------ classifier
@dataclasses.dataclass(frozen=True)
class OptimConfig(Section):
    """How a classifier's weights move: epochs, batch, optimizer, learning-rate schedule, loss smoothing and the
    weight average. Units live in names: ``lr`` is the peak learning rate, ``ema_half_life`` counts images."""

    epochs: int = option(16, "passes over the training split", at_most=100_000)
    batch_size: int = option(64, "images per step on each device", at_most=1 << 20)
    optimizer: str = option("sgd", "sgd (Nesterov) | adamw")
    lr: float = option(0.05, "peak learning rate of the schedule", at_most=10.0)
    momentum: float = option(0.9, "SGD momentum (Nesterov), or Adam beta1")
    weight_decay: float = option(5e-4, "L2 penalty on weights (not on biases or BatchNorm)", at_most=1.0)
    schedule: str = option("onecycle", "onecycle | cosine | constant")
    warmup_fraction: float = option(0.25, "onecycle: share of steps spent warming up")
    label_smoothing: float | None = option(None, "cross-entropy label smoothing (default 0.1; 0 with adversarial "
                                                 "training)")
    ema_half_life: float = option(0, "weight average (EMA) of the model, its half-life in images; 0 = off. "
                                     "Validation, keep=best and the saved model use the average")
    ema_rampup: float | None = option(0.05, "EMA half-life at most this x images seen (None: no ramp-up)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        require(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        require(self.optimizer in OPTIMIZERS, "optimizer", f"one of {', '.join(OPTIMIZERS)}", self.optimizer)
        require(self.lr > 0, "lr", "a learning rate > 0", self.lr)
        require(0 <= self.momentum < 1, "momentum", "a value in [0, 1)", self.momentum)
        require(self.weight_decay >= 0, "weight_decay", "a value >= 0", self.weight_decay)
        require(self.schedule in SCHEDULES, "schedule", f"one of {', '.join(SCHEDULES)}", self.schedule)
        require(0 < self.warmup_fraction < 1, "warmup_fraction", "a value in (0, 1)", self.warmup_fraction)
        # None: the composing config's default (TrainConfig fills it in before its sections check)
        require(self.label_smoothing is None or 0 <= self.label_smoothing < 1, "label_smoothing",
                "a value in [0, 1)", self.label_smoothing)
        require(self.ema_half_life >= 0, "ema_half_life", "images >= 0", self.ema_half_life)
        require(self.ema_rampup is None or self.ema_rampup > 0, "ema_rampup", "None or a factor > 0",
                self.ema_rampup)


@dataclasses.dataclass(frozen=True)
class AdversarialConfig(Section):
    """Adversarial training: the attack that makes the training images, its radius and steps, and TRADES' loss.
    Radii are pixels in [0, 1], as everywhere in optik. ``eps_ramp`` is checked by the composing config, against its
    number of epochs."""

    adversarial: str | None = option(None, "adversarial training: pgd (Madry) | fgsm-rs (Wong et al. 2020) | "
                                           "trades (Zhang et al. 2019)")
    eps: float | None = option(None, "adversarial training: Linf radius, pixels in [0, 1] (MNIST 0.3, CIFAR 8/255)")
    attack_steps: int = option(10, "adversarial training: PGD / TRADES steps (fgsm-rs: always 1)", at_most=100_000)
    attack_step_size: float | None = option(None, "adversarial training: step size (default pgd/trades 2.5 * "
                                                  "eps / steps, fgsm-rs 1.25 * eps)")
    eps_ramp: int = option(0, "adversarial training: epochs over which eps grows linearly from 0")
    trades_beta: float = option(6.0, "TRADES: weight of the robustness (KL) term", at_most=1e4)
    trades_batchnorm: str = option("joint", "TRADES: joint (clean and adversarial images in one forward pass, one "
                                            "set of BatchNorm statistics: measured better, benchmarks/README.md) | "
                                            "separate (two passes, as the authors' code)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.adversarial in ADVERSARIAL_METHODS, "adversarial", "None, pgd, fgsm-rs or trades",
                self.adversarial)
        require(self.adversarial is None or (self.eps is not None and 0 < self.eps <= 1), "eps",
                "a radius in (0, 1] with adversarial training", self.eps)
        require(self.adversarial is not None or self.eps is None, "eps",
                "no eps without adversarial training (add adversarial: pgd, fgsm-rs or trades)", self.eps)
        require(self.attack_steps >= 1, "attack_steps", "an integer >= 1", self.attack_steps)
        require(self.trades_batchnorm in ("joint", "separate"), "trades_batchnorm", "joint or separate",
                self.trades_batchnorm)


@dataclasses.dataclass(frozen=True)
class TrainConfig(ClusterConfig, AdversarialConfig, AugmentOptions, OptimConfig, ModelConfig, DataConfig):
    """Everything `optik train` needs; saved resolved into the run's ``config.yaml``.

    Its sections, in the order of ``config.yaml``: :class:`~optik.core.config.DataConfig`,
    :class:`~optik.models.config.ModelConfig`, :class:`OptimConfig`, :class:`~optik.augment.presets.AugmentOptions`
    (the ImageDataGenerator knobs, with Keras' names and meanings), :class:`AdversarialConfig`,
    :class:`~optik.core.config.ClusterConfig` (hardware); then the fields below. Bases are listed last first: see
    the module docstring.
    """

    train_per_class: int | None = option(None, "keep only N training images per class (few-shot; seeded by "
                                               "split_seed; val and test splits unchanged)")
    seed: int = option(0, "initialization, shuffling, augmentation, dropout")
    early_stopping: int = option(0, "patience in epochs on val accuracy; 0 = off")
    checkpoint_every: int = option(0, "also write checkpoints/last.ckpt every N optimizer steps within an epoch "
                                      "(with the data position and random state: --resume continues mid-epoch); 0: "
                                      "at the end of each epoch only")
    keep: str = option("last", "weights saved as the model: last (end of the schedule) | best (val accuracy)")

    def __post_init__(self) -> None:
        # Defaults that depend on the kind of training. Adversarial training (Madry, Wong, TRADES) uses plain
        # cross-entropy: label smoothing makes fixed-step attacks overstate robustness; and the recipe measured in
        # benchmarks/README.md trains on the images as they are. `adversarial_defaults` says what was filled in.
        filled = {k: v for k, v in (ADVERSARIAL_DEFAULTS if self.adversarial else STANDARD_DEFAULTS).items()
                  if getattr(self, k) is None}
        for key, value in filled.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_filled", filled if self.adversarial else {})
        super().__post_init__()  # every section's checks
        require(self.train_per_class is None or self.train_per_class >= 1, "train_per_class",
                "None or an integer >= 1", self.train_per_class)
        require(self.early_stopping >= 0, "early_stopping", "a patience in epochs >= 0", self.early_stopping)
        require(self.checkpoint_every >= 0, "checkpoint_every", "steps >= 0 (0: end of epoch only)",
                self.checkpoint_every)
        require(self.keep in ("last", "best"), "keep", "last or best", self.keep)
        self._check_across_sections()

    def _check_across_sections(self) -> None:
        require(self.val_fraction > 0 or (self.keep == "last" and not self.early_stopping), "val_fraction",
                "a validation split (val_fraction > 0) for keep=best or early_stopping", self.val_fraction)
        require(self.unfreeze_at is None or (self.freeze == "backbone" and 0 < self.unfreeze_at < self.epochs),
                "unfreeze_at", f"an epoch in [1, epochs={self.epochs}) together with freeze=backbone",
                f"{self.unfreeze_at} with freeze={self.freeze}")
        require(self.unfreeze_at is None or self.devices * self.num_nodes == 1, "unfreeze_at",
                "a single-process run (data parallel wraps only the parameters trainable at the start)",
                f"devices={self.devices}, num_nodes={self.num_nodes}")
        require(0 <= self.eps_ramp < self.epochs, "eps_ramp", f"epochs in [0, epochs={self.epochs})", self.eps_ramp)

    @property
    def adversarial_defaults(self) -> dict[str, Any]:
        """The options adversarial training set because the user left them out (``{}`` otherwise)."""
        return dict(self._filled)


# ------------------------------------------------------------------------------------------------ generative
@dataclasses.dataclass(frozen=True)
class GenerativeConfig(HardwareConfig, DataConfig):
    """What `optik gan train` and `optik vae train` share: the data and hardware sections, then the options below.
    Saved resolved into the run's ``config.yaml``."""

    min_image_size = 8  # the generators' and the encoder's smallest stage

    epochs: int | None = option(None, "passes over the training split (default 30, or unlimited with "
                                      "max_minutes)", at_most=100_000)
    max_minutes: float | None = option(None, "wall-clock training budget in minutes (stops mid-epoch)",
                                       at_most=525_600)
    batch_size: int = option(64, "images per step", at_most=1 << 20)
    latent_dim: int = option(64, "size of the latent code z", at_most=65_536)
    width: int = option(32, "channels of the widest-resolution stage; inner stages 2x, 4x, ...", at_most=65_536)
    lr: float = option(2e-4, "Adam learning rate (the generator's, for GANs)", at_most=10.0)
    beta1: float = option(0.5, "Adam beta1")
    beta2: float = option(0.999, "Adam beta2")
    schedule: str = option("constant", "learning rate: constant | cosine (to 0 at the last epoch, or at the end of "
                                       "max_minutes: then measured in time)")
    quality_every: int = option(5, "epochs between sample-quality checks (FID on the train split; the last epoch "
                                   "is always checked); 0 = never")
    quality_samples: int = option(1000, "generated images per sample-quality check")
    features: str | None = option(None, "feature extractor for FID/KID: an optik classification run folder, or "
                                        "inception:PATH (torchvision Inception-v3 weights); default: an optik CNN "
                                        "trained once on the same data and cached")
    keep: str = option("best", "weights saved as the model: best (lowest FID seen) | last")
    seed: int = option(0, "initialization, latent codes, augmentation")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.epochs is None or self.epochs >= 1, "epochs", "None or an integer >= 1", self.epochs)
        require(self.max_minutes is None or self.max_minutes > 0, "max_minutes", "None or minutes > 0",
                self.max_minutes)
        require(self.batch_size >= 2, "batch_size", "an integer >= 2", self.batch_size)
        require(self.latent_dim >= 1, "latent_dim", "an integer >= 1", self.latent_dim)
        require(self.width >= 1, "width", "an integer >= 1", self.width)
        require(self.lr > 0, "lr", "a learning rate > 0", self.lr)
        require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1/beta2", "values in [0, 1)",
                (self.beta1, self.beta2))
        require(self.schedule in ("constant", "cosine"), "schedule", "constant or cosine", self.schedule)
        require(self.quality_every >= 0, "quality_every", "epochs >= 0", self.quality_every)
        require(self.quality_samples >= 2, "quality_samples", "an integer >= 2", self.quality_samples)
        require(self.keep in ("best", "last"), "keep", "best or last", self.keep)
        require(self.keep == "last" or self.quality_every > 0, "keep",
                "last when quality_every is 0 (best needs sample-quality checks)", self.keep)

    @property
    def max_epochs(self) -> int:
        return self.epochs or (1_000_000 if self.max_minutes else 30)


@dataclasses.dataclass(frozen=True)
class GANConfig(GenerativeConfig):
    """`optik gan train`: a DCGAN with the options of current practice (see docs/generative.md)."""

    lr: float = option(2e-3, "Adam learning rate of the generator (and of the discriminator unless d_lr)",
                       at_most=10.0)
    loss: str = option("nonsaturating", "nonsaturating | minimax (the lecture's objective) | hinge")
    d_norm: str = option("none", "discriminator normalization: none (with R1) | bn (DCGAN) | sn (spectral norm)")
    d_width: int | None = option(None, "discriminator width (default: width)")
    d_lr: float | None = option(None, "discriminator learning rate (two-timescale; default: lr)", at_most=10.0)
    r1_gamma: float = option(1.0, "R1 penalty weight on real images (Mescheder et al. 2018); 0 = off")
    ema_half_life: float = option(10_000, "generator weight average: half-life in images; 0 = off")
    ema_rampup: float | None = option(0.05, "EMA half-life at most this x images seen (None: no ramp-up)")
    conditional: bool = option(False, "class-conditional generator and projection discriminator")
    diffaugment: str = option("", "DiffAugment ops for the discriminator's inputs: color,translation,cutout")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.loss in GAN_LOSSES, "loss", f"one of {', '.join(GAN_LOSSES)}", self.loss)
        require(self.d_norm in ("bn", "sn", "none"), "d_norm", "bn, sn or none", self.d_norm)
        require(self.d_width is None or self.d_width >= 1, "d_width", "None or an integer >= 1", self.d_width)
        require(self.d_lr is None or self.d_lr > 0, "d_lr", "None or a learning rate > 0", self.d_lr)
        require(self.r1_gamma >= 0, "r1_gamma", "a weight >= 0", self.r1_gamma)
        require(self.ema_half_life >= 0, "ema_half_life", "images >= 0", self.ema_half_life)
        require(self.ema_rampup is None or self.ema_rampup > 0, "ema_rampup", "None or a factor > 0",
                self.ema_rampup)
        ops = [o for o in self.diffaugment.split(",") if o.strip()]
        require(all(o.strip() in ("color", "translation", "cutout") for o in ops), "diffaugment",
                "a comma-separated subset of color, translation, cutout", self.diffaugment)


@dataclasses.dataclass(frozen=True)
class VAEConfig(GenerativeConfig):
    """`optik vae train`: a convolutional VAE trained on the ELBO."""

    width: int = option(16, "channels of the widest-resolution stage; inner stages 2x, 4x, ... (16 trains 1.6x as "
                            "many steps as 32 in a time budget, with an equal or better test -ELBO and FID on "
                            "mnist5k: docs/generative.md)", at_most=65_536)
    lr: float = option(2e-3, "Adam learning rate", at_most=10.0)
    beta1: float = option(0.9, "Adam beta1")
    schedule: str = option("cosine", "learning rate: cosine (to 0 at the last epoch, or at the end of max_minutes: "
                                     "then measured in time) | constant")
    latent_dim: int = option(16, "size of the latent code z", at_most=65_536)
    hidden: int = option(256, "units of the fully connected layer on each side", at_most=1 << 20)
    likelihood: str = option("bernoulli", "bernoulli (cross-entropy on pixels) | gaussian")
    sigma: float | None = option(None, "gaussian: the fixed pixel standard deviation (default: learned)")
    beta: float = option(1.0, "weight of the KL term (beta-VAE, Higgins et al. 2017); -ELBO is reported at 1")
    kl_warmup: int = option(0, "steps over which the KL weight grows linearly from 0 to beta")
    shift_pixels: int = option(1, "shift training images by up to N pixels at random (zero fill): regularizes a "
                                  "VAE on small data (better test -ELBO); 0: off")
    shift_until: float = option(0.7, "share of training (of the time budget, or of the epochs) during which "
                                     "--shift-pixels applies; the rest trains on the images as they are")
    prior_components: int = option(50, "0: the N(0, I) prior; K > 0: a learned mixture of K Gaussians as the prior "
                                       "(a tighter ELBO; samples from it land nearer real codes)")
    quality_every: int = option(10, "epochs between sample-quality checks (the last epoch is always checked); a "
                                    "VAE on a cosine schedule improves to its end, so fewer checks than a GAN's")
    val_every: int = option(5, "epochs between validation -ELBO checks (the last epoch is always checked; the "
                               "test -ELBO is measured after training); an mnist5k epoch takes about 3 s, its "
                               "validation 0.1 s")
    latent_mixture: int = option(10, "components of a Gaussian mixture fitted to the training images' latent codes "
                                     "after training; samples draw their codes from it (ex-post density "
                                     "estimation, Ghosh et al. 2020). 0: from the N(0, I) prior")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.likelihood in LIKELIHOODS, "likelihood", f"one of {', '.join(LIKELIHOODS)}", self.likelihood)
        require(self.sigma is None or self.sigma > 0, "sigma", "None or a standard deviation > 0", self.sigma)
        require(self.beta >= 0, "beta", "a weight >= 0", self.beta)
        require(self.kl_warmup >= 0, "kl_warmup", "steps >= 0", self.kl_warmup)
        require(self.hidden >= 1, "hidden", "an integer >= 1", self.hidden)
        require(self.shift_pixels >= 0, "shift_pixels", "pixels >= 0", self.shift_pixels)
        require(0 < self.shift_until <= 1, "shift_until", "a share of training in (0, 1]", self.shift_until)
        require(self.prior_components >= 0, "prior_components", "a number of components >= 0 (0: N(0, I))",
                self.prior_components)
        require(self.val_every >= 1, "val_every", "epochs >= 1", self.val_every)
        require(self.latent_mixture >= 0, "latent_mixture", "a number of components >= 0 (0: none)",
                self.latent_mixture)


__all__ = ["ADVERSARIAL_DEFAULTS", "AdversarialConfig", "GANConfig", "GenerativeConfig", "OptimConfig",
           "STANDARD_DEFAULTS", "TrainConfig", "VAEConfig"]
