"""Frozen dataclasses are the config schema: YAML files and CLI flags map onto them; unknown keys raise."""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
from pathlib import Path
from typing import Any, Literal, Mapping, get_args, get_origin, get_type_hints

import yaml

from optik.core.errors import ConfigError, short

PRECISIONS = ("32", "bf16-mixed", "16-mixed", "64")
MAX_CONFIG_BYTES = 1_000_000
SCHEDULES = ("onecycle", "cosine", "constant")
OPTIMIZERS = ("sgd", "adamw")


def _field(default: Any, help: str) -> Any:
    return dataclasses.field(default=default, metadata={"help": help})


# Options left out (None) take these values; with adversarial training, the recipe measured in benchmarks/README.md
STANDARD_DEFAULTS = {"label_smoothing": 0.1, "augment": "default"}
ADVERSARIAL_DEFAULTS = {"label_smoothing": 0.0, "augment": "none"}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything `optik train` needs; saved resolved into the run's ``config.yaml``.

    Units live in names (``lr`` is the peak learning rate); the augmentation knobs keep Keras'
    ImageDataGenerator names and meanings (``rotation_range`` in degrees, shifts as fractions or pixels).
    """

    data: str = _field("mnist5k", "a dataset name (`optik datasets`) or a folder / CSV manifest path")
    model: str = _field("cnn", "a model name (`optik models`) or a CNN spec string")
    epochs: int = _field(16, "passes over the training split")
    batch_size: int = _field(64, "images per step on each device")
    optimizer: str = _field("sgd", "sgd (Nesterov) | adamw")
    lr: float = _field(0.05, "peak learning rate of the schedule")
    momentum: float = _field(0.9, "SGD momentum (Nesterov), or Adam beta1")
    weight_decay: float = _field(5e-4, "L2 penalty on weights (not on biases or BatchNorm)")
    schedule: str = _field("onecycle", "onecycle | cosine | constant")
    warmup_fraction: float = _field(0.25, "onecycle: share of steps spent warming up")
    label_smoothing: float | None = _field(None, "cross-entropy label smoothing (default 0.1; 0 with adversarial "
                                                 "training)")
    ema_half_life: float = _field(0, "weight average (EMA) of the model, its half-life in images; 0 = off. "
                                     "Validation, keep=best and the saved model use the average")
    ema_rampup: float | None = _field(0.05, "EMA half-life at most this x images seen (None: no ramp-up)")
    pretrained: bool = _field(False, "zoo / timm models: start from the default hub weights (cached or online)")
    weights: str | None = _field(None, "start from these weights: .safetensors / .pth file or optik run folder")
    input_size: int | None = _field(None, "the size the network sees (resized on the fly); default: the zoo "
                                          "model's native size, the data's size for optik CNNs")
    freeze: str = _field("none", "none | backbone (train the head only; backbone BatchNorm stays frozen)")
    unfreeze_at: int | None = _field(None, "with freeze=backbone: the epoch (0-based) fine-tuning starts")
    trainable_stages: int | None = _field(None, "fine-tune only the last N backbone stages (and the head); "
                                                "earlier stages stay frozen, BatchNorm included")
    backbone_lr_scale: float = _field(1.0, "backbone learning rate = lr * this (discriminative LRs)")
    augment: str | None = _field(None, "augmentation preset: none | default | natural | keras-classic (default: "
                                       "default; none with adversarial training)")
    rotation_range: float | None = _field(None, "augment: degrees, U(-r, r) (ImageDataGenerator meaning)")
    width_shift_range: int | float | list | None = _field(None, "augment: a float: fraction of width if < 1, else "
                                                                "pixels, U(-r, r); an integer N: whole pixels up to "
                                                                "N-1 with a random sign; a list: one value, random "
                                                                "sign (Keras)")
    height_shift_range: int | float | list | None = _field(None, "augment: as width_shift_range, for the height")
    shear_range: float | None = _field(None, "augment: shear angle in degrees")
    zoom_range: float | list | None = _field(None, "augment: z -> [1-z, 1+z], or lo,hi")
    brightness_range: list | None = _field(None, "augment: lo,hi multiplier")
    channel_shift_range: float | None = _field(None, "augment: offset range, in [0, 1] pixel units")
    horizontal_flip: bool | None = _field(None, "augment: flip left-right half the time")
    vertical_flip: bool | None = _field(None, "augment: flip upside down half the time")
    fill_mode: str | None = _field(None, "augment: nearest | reflect | wrap | constant")
    cval: float | None = _field(None, "augment: the constant of fill_mode constant")
    keras_compat: bool | None = _field(None, "augment: reproduce Keras' geometry quirks exactly")
    adversarial: str | None = _field(None, "adversarial training: pgd (Madry) | fgsm-rs (Wong et al. 2020) | "
                                           "trades (Zhang et al. 2019)")
    eps: float | None = _field(None, "adversarial training: Linf radius, pixels in [0, 1] (MNIST 0.3, CIFAR 8/255)")
    attack_steps: int = _field(10, "adversarial training: PGD / TRADES steps (fgsm-rs: always 1)")
    attack_step_size: float | None = _field(None, "adversarial training: step size (default pgd/trades 2.5 * "
                                                  "eps / steps, fgsm-rs 1.25 * eps)")
    eps_ramp: int = _field(0, "adversarial training: epochs over which eps grows linearly from 0")
    trades_beta: float = _field(6.0, "TRADES: weight of the robustness (KL) term")
    trades_batchnorm: str = _field("joint", "TRADES: joint (clean and adversarial images in one forward pass, one set "
                                            "of BatchNorm statistics: measured better, benchmarks/README.md) | "
                                            "separate (two passes, as the authors' code)")
    image_size: int | None = _field(None, "folder datasets: resize images to this square size")
    classes: str | None = _field(None, "keep only these classes, comma separated (e.g. 5,6,7,8,9), in this order")
    train_per_class: int | None = _field(None, "keep only N training images per class (few-shot; seeded by "
                                               "split_seed; val and test splits unchanged)")
    val_fraction: float = _field(0.1, "of the non-test images")
    test_fraction: float = _field(0.2, "for datasets without a fixed test split")
    split_seed: int = _field(0, "fixes the train/val/test split independently of `seed`")
    seed: int = _field(0, "initialization, shuffling, augmentation, dropout")
    early_stopping: int = _field(0, "patience in epochs on val accuracy; 0 = off")
    checkpoint_every: int = _field(0, "also write checkpoints/last.ckpt every N optimizer steps within an epoch (with "
                                      "the data position and random state: --resume continues mid-epoch); 0: at the "
                                      "end of each epoch only")
    keep: str = _field("last", "weights saved as the model: last (end of the schedule) | best (val accuracy)")
    precision: str = _field("32", "32 | bf16-mixed | 16-mixed | 64")
    accelerator: str = _field("auto", "auto | cpu | gpu | mps")
    devices: int = _field(1, "processes / GPUs per node (data parallel when > 1)")
    strategy: str = _field("auto", "auto | ddp | ddp_spawn | ...")
    num_nodes: int = _field(1, "machines (with torchrun or SLURM)")
    strict: bool = _field(False, "a corrupt image stops loading instead of being skipped with a warning")
    stream: bool = _field(False, "folders and manifests: decode images in worker processes as batches are needed, "
                                 "even when they would fit in memory")
    max_memory_gb: float = _field(4.0, "folders and manifests: decode into memory when the decoded, resized images "
                                       "take at most this many GiB; stream them from their files otherwise")
    workers: int | None = _field(None, "processes decoding streamed images (default: this machine's cores)")
    group_column: str | None = _field(None, "manifests: a column (e.g. patient_id) whose groups each stay in one "
                                            "split, stratified by label as far as the groups allow")
    dicom_window: list | None = _field(None, "DICOM images: center,width of the display window (default: each "
                                             "file's VOI LUT or first window)")
    log_shards: bool = _field(False, "write the sample indices each rank saw (for checking DDP sharding)")

    # long: one check per field, read top to bottom (each section of the config will check its own)
    def __post_init__(self) -> None:
        # Defaults that depend on the kind of training. Adversarial training (Madry, Wong, TRADES) uses plain
        # cross-entropy: label smoothing makes fixed-step attacks overstate robustness; and the recipe measured in
        # benchmarks/README.md trains on the images as they are. `adversarial_defaults` says what was filled in.
        filled = {k: v for k, v in (ADVERSARIAL_DEFAULTS if self.adversarial else STANDARD_DEFAULTS).items()
                  if getattr(self, k) is None}
        for key, value in filled.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "_filled", filled if self.adversarial else {})
        check_numbers(self)
        _check(self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        _check(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        _check(self.lr > 0, "lr", "a learning rate > 0", self.lr)
        _check(0 <= self.momentum < 1, "momentum", "a value in [0, 1)", self.momentum)
        _check(self.weight_decay >= 0, "weight_decay", "a value >= 0", self.weight_decay)
        _check(0 < self.warmup_fraction < 1, "warmup_fraction", "a value in (0, 1)", self.warmup_fraction)
        _check(0 <= self.label_smoothing < 1, "label_smoothing", "a value in [0, 1)", self.label_smoothing)
        _check(self.ema_half_life >= 0, "ema_half_life", "images >= 0", self.ema_half_life)
        _check(self.ema_rampup is None or self.ema_rampup > 0, "ema_rampup", "None or a factor > 0",
               self.ema_rampup)
        self.augmentation()  # validates the preset and knobs now, not at the first training step
        _check(self.image_size is None or self.image_size >= 4, "image_size", "None or an integer >= 4",
               self.image_size)
        _check(0 <= self.val_fraction < 1, "val_fraction", "a fraction in [0, 1)", self.val_fraction)
        _check(0 < self.test_fraction < 1, "test_fraction", "a fraction in (0, 1)", self.test_fraction)
        _check(self.early_stopping >= 0, "early_stopping", "a patience in epochs >= 0", self.early_stopping)
        _check(self.checkpoint_every >= 0, "checkpoint_every", "steps >= 0 (0: end of epoch only)",
               self.checkpoint_every)
        _check(self.devices >= 1, "devices", "an integer >= 1", self.devices)
        _check(self.num_nodes >= 1, "num_nodes", "an integer >= 1", self.num_nodes)
        _check(self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}", self.precision)
        _check(self.schedule in SCHEDULES, "schedule", f"one of {', '.join(SCHEDULES)}", self.schedule)
        _check(self.keep in ("last", "best"), "keep", "last or best", self.keep)
        _check(self.val_fraction > 0 or (self.keep == "last" and not self.early_stopping), "val_fraction",
               "a validation split (val_fraction > 0) for keep=best or early_stopping", self.val_fraction)
        _check(self.freeze in ("none", "backbone"), "freeze", "none or backbone", self.freeze)
        _check(self.unfreeze_at is None or (self.freeze == "backbone" and 0 < self.unfreeze_at < self.epochs),
               "unfreeze_at", f"an epoch in [1, epochs={self.epochs}) together with freeze=backbone",
               f"{self.unfreeze_at} with freeze={self.freeze}")
        _check(self.unfreeze_at is None or self.devices * self.num_nodes == 1, "unfreeze_at",
               "a single-process run (data parallel wraps only the parameters trainable at the start)",
               f"devices={self.devices}, num_nodes={self.num_nodes}")
        _check(not (self.pretrained and self.weights), "pretrained",
               "either pretrained (hub weights) or weights (a local file), not both", f"both, weights={self.weights}")
        _check(self.adversarial in (None, "pgd", "fgsm-rs", "trades"), "adversarial",
               "None, pgd, fgsm-rs or trades", self.adversarial)
        _check(self.adversarial is None or (self.eps is not None and 0 < self.eps <= 1), "eps",
               "a radius in (0, 1] with adversarial training", self.eps)
        _check(self.adversarial is not None or self.eps is None, "eps",
               "no eps without adversarial training (add adversarial: pgd, fgsm-rs or trades)", self.eps)
        _check(self.attack_steps >= 1, "attack_steps", "an integer >= 1", self.attack_steps)
        _check(self.trades_batchnorm in ("joint", "separate"), "trades_batchnorm", "joint or separate",
               self.trades_batchnorm)
        _check(0 <= self.eps_ramp < self.epochs, "eps_ramp", f"epochs in [0, epochs={self.epochs})", self.eps_ramp)
        _check(self.trainable_stages is None or self.trainable_stages >= 0, "trainable_stages",
               "None or an integer >= 0", self.trainable_stages)
        _check(self.input_size is None or self.input_size >= 8, "input_size", "None or an integer >= 8",
               self.input_size)
        _check(self.train_per_class is None or self.train_per_class >= 1, "train_per_class",
               "None or an integer >= 1", self.train_per_class)
        _check(self.backbone_lr_scale > 0, "backbone_lr_scale", "a factor > 0", self.backbone_lr_scale)
        _check(self.optimizer in OPTIMIZERS, "optimizer", f"one of {', '.join(OPTIMIZERS)}", self.optimizer)
        _check(self.max_memory_gb >= 0, "max_memory_gb", "GiB >= 0 (0: always stream)", self.max_memory_gb)
        _check(self.workers is None or 0 <= self.workers <= 256, "workers", "None or 0 to 256 processes", self.workers)
        check_data_options(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def adversarial_defaults(self) -> dict[str, Any]:
        """The options adversarial training set because the user left them out (``{}`` otherwise)."""
        return dict(self._filled)

    def augmentation(self):
        """The training augmentation: the preset with any knob given here on top (None: no augmentation)."""
        from optik.augment.presets import KNOBS, make_augment

        return make_augment(self.augment, **{k: getattr(self, k) for k in KNOBS})


# Upper bounds past which a value is a typo, not a choice: refused up front with the bound, instead of training
# for hours and dying in an overflow ("--lr 1e300") or an allocator ("--batch-size 1e12").
LIMITS = {"lr": 10.0, "d_lr": 10.0, "epochs": 100_000, "batch_size": 1 << 20, "attack_steps": 100_000,
          "weight_decay": 1.0, "image_size": 8192, "input_size": 8192, "trades_beta": 1e4, "devices": 4096,
          "num_nodes": 65_536, "max_minutes": 525_600, "latent_dim": 65_536, "width": 65_536, "hidden": 1 << 20}


_TYPE_NAMES = {float: "a finite number", int: "an integer", bool: "true or false", str: "a string"}


def check_numbers(cfg) -> None:
    """Every number of a config is finite (NaN and infinity are never a setting) and within :data:`LIMITS`."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"config value {f.name}: expected a finite number, got {v}")
        if f.name in LIMITS and isinstance(value, (int, float)) and not isinstance(value, bool) \
                and value > LIMITS[f.name]:
            raise ConfigError(f"config value {f.name}: expected at most {LIMITS[f.name]:,}, got {short(value)}; "
                              f"larger values are refused as a likely typo")


def check_data_options(cfg) -> None:
    """The data options classifier and generative configs share."""
    _check(cfg.group_column is None or bool(str(cfg.group_column).strip()), "group_column",
           "None or a manifest column name", cfg.group_column)
    w = cfg.dicom_window
    _check(w is None or (len(w) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in w)
                         and w[1] > 0), "dicom_window", "center,width: two numbers, width > 0", w)


def data_options(cfg) -> dict[str, Any]:
    """The keyword arguments of :func:`optik.data.registry.open_data` a config sets (classifier or generative)."""
    values = {k: getattr(cfg, k) for k in ("data", "image_size", "strict", "val_fraction", "test_fraction",
                                           "split_seed", "stream", "max_memory_gb", "workers", "group_column",
                                           "train_per_class") if hasattr(cfg, k)}
    values["classes"] = [c.strip() for c in cfg.classes.split(",")] if getattr(cfg, "classes", None) else None
    values["dicom_window"] = tuple(float(v) for v in cfg.dicom_window) if getattr(cfg, "dicom_window", None) else None
    return values


def _check(ok: bool, key: str, expected: str, got: object) -> None:
    if not ok:
        raise ConfigError(f"config value {key}: expected {expected}, got {short(got)}")


def from_dict(cls: type, values: Mapping[str, Any], *, source: str = "config"):
    """Build ``cls`` from a mapping, converting simple types; unknown keys raise with a suggestion."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = get_type_hints(cls)
    kwargs = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            close = difflib.get_close_matches(name, fields, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"unknown key {short(key, 60)} in {source}.{hint} Valid keys: {', '.join(fields)}")
        kwargs[name] = _coerce(name, value, hints[name], source)
    return cls(**kwargs)


def _coerce(name: str, value: Any, hint: Any, source: str) -> Any:
    """Convert YAML / CLI values to the field's type, or raise a ConfigError naming both."""
    optional = type(None) in get_args(hint)
    if value is None:
        if optional:
            return None
        raise ConfigError(f"config value {name} in {source}: expected a value, got null")
    args = [a for a in get_args(hint) if a is not type(None)]
    if list in args and (isinstance(value, (list, tuple)) or (isinstance(value, str) and "," in value)):
        items = value.split(",") if isinstance(value, str) else value
        try:
            return [float(v) for v in items]
        except (TypeError, ValueError):
            raise ConfigError(f"config value {name} in {source}: expected numbers, got {short(value)}") from None
    if int in args and float in args:  # a number whose type means something (Keras' shift ranges): keep ints ints
        try:
            if isinstance(value, str):
                value = float(value) if any(c in value.lower() for c in ".en") else int(value)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                return value
        except ValueError:
            pass
        raise ConfigError(f"config value {name} in {source}: expected a number, got {short(value)}")
    base = args[0] if args else hint
    if get_origin(base) is Literal:
        base = str
    try:
        if base is bool:
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if base is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(value)
        if base is float:
            number = float(value)
            if not math.isfinite(number):
                raise ValueError(value)
            return number
        if base is str:
            return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"config value {name} in {source}: expected {_TYPE_NAMES.get(base, getattr(base, '__name__', base))}, "
            f"got {short(value)}"
        ) from None
    return value


def resolve_config(cls: type, config: Any = None, **overrides: Any):
    """A ``cls`` config from a YAML path, a dict or a config object, with keyword overrides (None = not given)
    on top; both layers are checked, so an error names the file or the arguments it came from."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        base, source = dataclasses.asdict(config), "config"
    elif isinstance(config, dict):
        base, source = dict(config), "config"
    elif config is not None:
        base, source = load_yaml(config), str(config)
        if "command" in base and isinstance(base.get("config"), dict):  # a run folder's config.yaml: its config
            base = base["config"]
    else:
        base, source = {}, "arguments"
    from_dict(cls, base, source=source)  # the file alone first, so that its errors name it
    # the values as given, not as resolved: an option the file leaves out stays "not given" (None) for the overrides,
    # so that defaults which depend on other options (adversarial training's) follow the final values
    given = {str(k).replace("-", "_"): v for k, v in base.items()}
    return from_dict(cls, {**given, **{k: v for k, v in overrides.items() if v is not None}}, source="arguments")


def load_yaml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        from optik.core.io import path_kind

        raise ConfigError(f"expected a YAML config file, got {str(path)!r}, which {path_kind(path)}")
    size = path.stat().st_size
    if size > MAX_CONFIG_BYTES:  # checked before parsing: a 50 MB list parses for minutes
        raise ConfigError(f"config file {str(path)!r} is {size:,} bytes; optik reads configs up to "
                          f"{MAX_CONFIG_BYTES:,} bytes (a config is a few dozen keys)")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {short(str(e), 300)}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"expected a mapping of keys to values in {str(path)!r}, got {type(values).__name__}")
    return values


GAN_LOSSES = ("nonsaturating", "minimax", "hinge")
LIKELIHOODS = ("bernoulli", "gaussian")


@dataclasses.dataclass(frozen=True)
class GenerativeConfig:
    """What `optik gan train` and `optik vae train` share; saved resolved into the run's ``config.yaml``."""

    data: str = _field("mnist5k", "a dataset name (`optik datasets`) or a folder / CSV manifest path")
    classes: str | None = _field(None, "keep only these classes, comma separated")
    image_size: int | None = _field(None, "folder datasets: resize images to this square size")
    epochs: int | None = _field(None, "passes over the training split (default 30, or unlimited with "
                                      "max_minutes)")
    max_minutes: float | None = _field(None, "wall-clock training budget in minutes (stops mid-epoch)")
    batch_size: int = _field(64, "images per step")
    latent_dim: int = _field(64, "size of the latent code z")
    width: int = _field(32, "channels of the widest-resolution stage; inner stages 2x, 4x, ...")
    lr: float = _field(2e-4, "Adam learning rate (the generator's, for GANs)")
    beta1: float = _field(0.5, "Adam beta1")
    beta2: float = _field(0.999, "Adam beta2")
    schedule: str = _field("constant", "learning rate: constant | cosine (to 0 at the last epoch, or at the end of "
                                       "max_minutes: then measured in time)")
    quality_every: int = _field(5, "epochs between sample-quality checks (FID on the train split; the last epoch "
                                   "is always checked); 0 = never")
    quality_samples: int = _field(1000, "generated images per sample-quality check")
    features: str | None = _field(None, "feature extractor for FID/KID: an optik classification run folder, or "
                                        "inception:PATH (torchvision Inception-v3 weights); default: an optik CNN "
                                        "trained once on the same data and cached")
    keep: str = _field("best", "weights saved as the model: best (lowest FID seen) | last")
    val_fraction: float = _field(0.1, "of the non-test images")
    test_fraction: float = _field(0.2, "for datasets without a fixed test split")
    split_seed: int = _field(0, "fixes the train/val/test split independently of `seed`")
    seed: int = _field(0, "initialization, latent codes, augmentation")
    precision: str = _field("32", "32 | bf16-mixed | 16-mixed | 64")
    accelerator: str = _field("auto", "auto | cpu | gpu | mps")
    devices: int = _field(1, "processes / GPUs (data parallel when > 1)")
    strict: bool = _field(False, "a corrupt image stops loading instead of being skipped with a warning")
    stream: bool = _field(False, "folders and manifests: decode images in worker processes as batches are needed, "
                                 "even when they would fit in memory")
    max_memory_gb: float = _field(4.0, "folders and manifests: decode into memory when the decoded, resized images "
                                       "take at most this many GiB; stream them from their files otherwise")
    workers: int | None = _field(None, "processes decoding streamed images (default: this machine's cores)")
    group_column: str | None = _field(None, "manifests: a column (e.g. patient_id) whose groups each stay in one "
                                            "split, stratified by label as far as the groups allow")
    dicom_window: list | None = _field(None, "DICOM images: center,width of the display window (default: each "
                                             "file's VOI LUT or first window)")

    def __post_init__(self) -> None:
        check_numbers(self)
        check_data_options(self)
        _check(self.max_memory_gb >= 0, "max_memory_gb", "GiB >= 0 (0: always stream)", self.max_memory_gb)
        _check(self.workers is None or 0 <= self.workers <= 256, "workers", "None or 0 to 256 processes", self.workers)
        _check(self.epochs is None or self.epochs >= 1, "epochs", "None or an integer >= 1", self.epochs)
        _check(self.max_minutes is None or self.max_minutes > 0, "max_minutes", "None or minutes > 0",
               self.max_minutes)
        _check(self.batch_size >= 2, "batch_size", "an integer >= 2", self.batch_size)
        _check(self.latent_dim >= 1, "latent_dim", "an integer >= 1", self.latent_dim)
        _check(self.width >= 1, "width", "an integer >= 1", self.width)
        _check(self.lr > 0, "lr", "a learning rate > 0", self.lr)
        _check(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "beta1/beta2", "values in [0, 1)",
               (self.beta1, self.beta2))
        _check(self.schedule in ("constant", "cosine"), "schedule", "constant or cosine", self.schedule)
        _check(self.quality_every >= 0, "quality_every", "epochs >= 0", self.quality_every)
        _check(self.quality_samples >= 2, "quality_samples", "an integer >= 2", self.quality_samples)
        _check(self.keep in ("best", "last"), "keep", "best or last", self.keep)
        _check(self.keep == "last" or self.quality_every > 0, "keep",
               "last when quality_every is 0 (best needs sample-quality checks)", self.keep)
        _check(0 <= self.val_fraction < 1, "val_fraction", "a fraction in [0, 1)", self.val_fraction)
        _check(0 < self.test_fraction < 1, "test_fraction", "a fraction in (0, 1)", self.test_fraction)
        _check(self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}", self.precision)
        _check(self.devices >= 1, "devices", "an integer >= 1", self.devices)
        _check(self.image_size is None or self.image_size >= 8, "image_size", "None or an integer >= 8",
               self.image_size)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def max_epochs(self) -> int:
        return self.epochs or (1_000_000 if self.max_minutes else 30)


@dataclasses.dataclass(frozen=True)
class GANConfig(GenerativeConfig):
    """`optik gan train`: a DCGAN with the options of current practice (see docs/generative.md)."""

    lr: float = _field(2e-3, "Adam learning rate of the generator (and of the discriminator unless d_lr)")
    loss: str = _field("nonsaturating", "nonsaturating | minimax (the lecture's objective) | hinge")
    d_norm: str = _field("none", "discriminator normalization: none (with R1) | bn (DCGAN) | sn (spectral norm)")
    d_width: int | None = _field(None, "discriminator width (default: width)")
    d_lr: float | None = _field(None, "discriminator learning rate (two-timescale; default: lr)")
    r1_gamma: float = _field(1.0, "R1 penalty weight on real images (Mescheder et al. 2018); 0 = off")
    ema_half_life: float = _field(10_000, "generator weight average: half-life in images; 0 = off")
    ema_rampup: float | None = _field(0.05, "EMA half-life at most this x images seen (None: no ramp-up)")
    conditional: bool = _field(False, "class-conditional generator and projection discriminator")
    diffaugment: str = _field("", "DiffAugment ops for the discriminator's inputs: color,translation,cutout")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.loss in GAN_LOSSES, "loss", f"one of {', '.join(GAN_LOSSES)}", self.loss)
        _check(self.d_norm in ("bn", "sn", "none"), "d_norm", "bn, sn or none", self.d_norm)
        _check(self.d_width is None or self.d_width >= 1, "d_width", "None or an integer >= 1", self.d_width)
        _check(self.d_lr is None or self.d_lr > 0, "d_lr", "None or a learning rate > 0", self.d_lr)
        _check(self.r1_gamma >= 0, "r1_gamma", "a weight >= 0", self.r1_gamma)
        _check(self.ema_half_life >= 0, "ema_half_life", "images >= 0", self.ema_half_life)
        _check(self.ema_rampup is None or self.ema_rampup > 0, "ema_rampup", "None or a factor > 0",
               self.ema_rampup)
        ops = [o for o in self.diffaugment.split(",") if o.strip()]
        _check(all(o.strip() in ("color", "translation", "cutout") for o in ops), "diffaugment",
               "a comma-separated subset of color, translation, cutout", self.diffaugment)


@dataclasses.dataclass(frozen=True)
class VAEConfig(GenerativeConfig):
    """`optik vae train`: a convolutional VAE trained on the ELBO."""

    width: int = _field(16, "channels of the widest-resolution stage; inner stages 2x, 4x, ... (16 trains 1.6x as "
                            "many steps as 32 in a time budget, with an equal or better test -ELBO and FID on "
                            "mnist5k: docs/generative.md)")
    lr: float = _field(2e-3, "Adam learning rate")
    beta1: float = _field(0.9, "Adam beta1")
    schedule: str = _field("cosine", "learning rate: cosine (to 0 at the last epoch, or at the end of max_minutes: "
                                     "then measured in time) | constant")
    latent_dim: int = _field(16, "size of the latent code z")
    hidden: int = _field(256, "units of the fully connected layer on each side")
    likelihood: str = _field("bernoulli", "bernoulli (cross-entropy on pixels) | gaussian")
    sigma: float | None = _field(None, "gaussian: the fixed pixel standard deviation (default: learned)")
    beta: float = _field(1.0, "weight of the KL term (beta-VAE, Higgins et al. 2017); -ELBO is reported at 1")
    kl_warmup: int = _field(0, "steps over which the KL weight grows linearly from 0 to beta")
    shift_pixels: int = _field(1, "shift training images by up to N pixels at random (zero fill): regularizes a "
                                  "VAE on small data (better test -ELBO); 0: off")
    shift_until: float = _field(0.7, "share of training (of the time budget, or of the epochs) during which "
                                     "--shift-pixels applies; the rest trains on the images as they are")
    prior_components: int = _field(50, "0: the N(0, I) prior; K > 0: a learned mixture of K Gaussians as the prior "
                                      "(a tighter ELBO; samples from it land nearer real codes)")
    quality_every: int = _field(10, "epochs between sample-quality checks (the last epoch is always checked); a "
                                    "VAE on a cosine schedule improves to its end, so fewer checks than a GAN's")
    val_every: int = _field(5, "epochs between validation -ELBO checks (the last epoch is always checked; the "
                               "test -ELBO is measured after training); an mnist5k epoch takes about 3 s, its "
                               "validation 0.1 s")
    latent_mixture: int = _field(10, "components of a Gaussian mixture fitted to the training images' latent codes "
                                     "after training; samples draw their codes from it (ex-post density "
                                     "estimation, Ghosh et al. 2020). 0: from the N(0, I) prior")

    def __post_init__(self) -> None:
        super().__post_init__()
        _check(self.likelihood in LIKELIHOODS, "likelihood", f"one of {', '.join(LIKELIHOODS)}", self.likelihood)
        _check(self.sigma is None or self.sigma > 0, "sigma", "None or a standard deviation > 0", self.sigma)
        _check(self.beta >= 0, "beta", "a weight >= 0", self.beta)
        _check(self.kl_warmup >= 0, "kl_warmup", "steps >= 0", self.kl_warmup)
        _check(self.hidden >= 1, "hidden", "an integer >= 1", self.hidden)
        _check(self.shift_pixels >= 0, "shift_pixels", "pixels >= 0", self.shift_pixels)
        _check(0 < self.shift_until <= 1, "shift_until", "a share of training in (0, 1]", self.shift_until)
        _check(self.prior_components >= 0, "prior_components", "a number of components >= 0 (0: N(0, I))",
               self.prior_components)
        _check(self.val_every >= 1, "val_every", "epochs >= 1", self.val_every)
        _check(self.latent_mixture >= 0, "latent_mixture", "a number of components >= 0 (0: none)",
               self.latent_mixture)
