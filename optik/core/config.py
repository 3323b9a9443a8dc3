"""Config machinery, and the sections every command shares.

Frozen dataclasses are the config schema: YAML files and CLI flags map onto them (:func:`resolve_config`,
:func:`from_dict`); unknown keys raise with a suggestion. A config is composed of *sections*: a section is a
frozen dataclass that owns its fields, their help texts (:func:`option`) and their checks (its
``__post_init__``). This module holds the machinery and the sections no higher package owns: the data a
command reads (:class:`DataConfig`) and the hardware it runs on (:class:`HardwareConfig`,
:class:`ClusterConfig`). The augmentation section lives in :mod:`optik.augment.presets`, the model's in
:mod:`optik.models.config`, and the composed configs of the commands (``TrainConfig``, ``GANConfig``,
``VAEConfig``) in :mod:`optik.training.config`, which explains the composition. Nothing here imports a package
above ``core``.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping, get_args, get_origin, get_type_hints

import yaml

from optik.core.errors import ConfigError, short

PRECISIONS = ("32", "bf16-mixed", "16-mixed", "64")
MAX_CONFIG_BYTES = 1_000_000
_TYPE_NAMES = {float: "a finite number", int: "an integer", bool: "true or false", str: "a string"}


def option(default: Any, help: str, *, at_most: float | None = None) -> Any:
    """A config field: its default, its ``--help`` text, and the bound past which a value is a typo, not a choice
    (refused up front instead of training for hours and dying in an overflow, ``--lr 1e300``, or in an allocator,
    ``--batch-size 1e12``)."""
    metadata = {"help": help} if at_most is None else {"help": help, "at_most": at_most}
    return dataclasses.field(default=default, metadata=metadata)


def require(ok: bool, key: str, expected: str, got: object) -> None:
    """Raise ``config value KEY: expected EXPECTED, got GOT`` unless ``ok``."""
    if not ok:
        raise ConfigError(f"config value {key}: expected {expected}, got {short(got)}")


def check_numbers(cfg) -> None:
    """Every number of a config is finite (NaN and infinity are never a setting) and within its field's bound."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"config value {f.name}: expected a finite number, got {v}")
        bound = f.metadata.get("at_most")
        if bound is not None and isinstance(value, (int, float)) and not isinstance(value, bool) and value > bound:
            raise ConfigError(f"config value {f.name}: expected at most {bound:,}, got {short(value)}; "
                              f"larger values are refused as a likely typo")


class Section:
    """The root of every config section: checks every number of the whole config, once.

    Each section's ``__post_init__`` calls ``super().__post_init__()`` first and then checks its own fields, so a
    config composed of several sections (by inheritance) runs each section's checks once, and this root first.
    """

    def __post_init__(self) -> None:
        check_numbers(self)

    def to_dict(self) -> dict[str, Any]:
        """Every field by name, flat, as a run's ``config.yaml`` stores it."""
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DataConfig(Section):
    """Which images, which classes, how they split and how they are read: the options of
    :func:`optik.data.registry.open_data` (see :func:`data_options`), the same for every command."""

    min_image_size: ClassVar[int] = 4  # not a field: a config whose networks need larger images raises it

    data: str = option("mnist5k", "a dataset name (`optik datasets`) or a folder / CSV manifest path")
    image_size: int | None = option(None, "folder datasets: resize images to this square size", at_most=8192)
    classes: str | None = option(None, "keep only these classes, comma separated (e.g. 5,6,7,8,9), in this order")
    val_fraction: float = option(0.1, "of the non-test images")
    test_fraction: float = option(0.2, "for datasets without a fixed test split")
    split_seed: int = option(0, "fixes the train/val/test split independently of `seed`")
    strict: bool = option(False, "a corrupt image stops loading instead of being skipped with a warning")
    stream: bool = option(False, "folders and manifests: decode images in worker processes as batches are needed, "
                                 "even when they would fit in memory")
    max_memory_gb: float = option(4.0, "folders and manifests: decode into memory when the decoded, resized images "
                                       "take at most this many GiB; stream them from their files otherwise")
    workers: int | None = option(None, "processes decoding streamed images (default: this machine's cores)")
    group_column: str | None = option(None, "manifests: a column (e.g. patient_id) whose groups each stay in one "
                                            "split, stratified by label as far as the groups allow")
    dicom_window: list | None = option(None, "DICOM images: center,width of the display window (default: each "
                                             "file's VOI LUT or first window)")

    def __post_init__(self) -> None:
        super().__post_init__()
        least = self.min_image_size
        require(self.image_size is None or self.image_size >= least, "image_size", f"None or an integer >= {least}",
                self.image_size)
        require(0 <= self.val_fraction < 1, "val_fraction", "a fraction in [0, 1)", self.val_fraction)
        require(0 < self.test_fraction < 1, "test_fraction", "a fraction in (0, 1)", self.test_fraction)
        require(self.max_memory_gb >= 0, "max_memory_gb", "GiB >= 0 (0: always stream)", self.max_memory_gb)
        require(self.workers is None or 0 <= self.workers <= 256, "workers", "None or 0 to 256 processes",
                self.workers)
        require(self.group_column is None or bool(str(self.group_column).strip()), "group_column",
                "None or a manifest column name", self.group_column)
        w = self.dicom_window
        require(w is None or (isinstance(w, (list, tuple)) and len(w) == 2
                              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in w)
                              and w[1] > 0),
                "dicom_window", "center,width: two numbers, width > 0", w)


@dataclasses.dataclass(frozen=True)
class HardwareConfig(Section):
    """Where a command computes, on one machine: the Lightning Trainer's precision, accelerator and devices."""

    precision: str = option("32", "32 | bf16-mixed | 16-mixed | 64")
    accelerator: str = option("auto", "auto | cpu | gpu | mps")
    devices: int = option(1, "processes / GPUs on each machine (data parallel when > 1)", at_most=4096)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.devices >= 1, "devices", "an integer >= 1", self.devices)
        require(self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}", self.precision)


@dataclasses.dataclass(frozen=True)
class ClusterConfig(HardwareConfig):
    """Hardware across machines: the DDP strategy and the number of nodes (torchrun, SLURM)."""

    strategy: str = option("auto", "auto | ddp | ddp_spawn | ...")
    num_nodes: int = option(1, "machines (with torchrun or SLURM)", at_most=65_536)
    log_shards: bool = option(False, "write the sample indices each rank saw (for checking DDP sharding)")

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.num_nodes >= 1, "num_nodes", "an integer >= 1", self.num_nodes)


def data_options(cfg) -> dict[str, Any]:
    """The keyword arguments of :func:`optik.data.registry.open_data` a config sets (classifier or generative): its
    :class:`DataConfig` fields, and the classifier's ``train_per_class``."""
    names = [f.name for f in dataclasses.fields(DataConfig)] + ["train_per_class"]
    values = {k: getattr(cfg, k) for k in names if hasattr(cfg, k)}
    values["classes"] = [c.strip() for c in cfg.classes.split(",")] if getattr(cfg, "classes", None) else None
    values["dicom_window"] = tuple(float(v) for v in cfg.dicom_window) if getattr(cfg, "dicom_window", None) else None
    return values


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
