"""A run is an object, not only a folder: what made it, its config, its model, its data.

Every command that reads a run goes through :class:`Run` (``evaluate``, ``predict``, ``attack``, ``explain``,
``report``, ``serve`` and the generative verbs): nothing else parses ``config.yaml`` or opens a run's data its own
way. The data come as split handles (:mod:`optik.data.handles`), in memory or streamed from files, so a verb works
on a run whose data do not fit in memory.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from optik.core.config import data_options, load_yaml, resolve_config
from optik.core.errors import ConfigError, RunError
from optik.core.io import RUN_MARKER, require_run_dir
from optik.data.handles import DataHandle, Split
from optik.training.config import GANConfig, TrainConfig, VAEConfig

KINDS = {"train": "classifier", "gan train": "gan", "vae train": "vae"}
CONFIGS = {"classifier": TrainConfig, "gan": GANConfig, "vae": VAEConfig}
HINT = {"classifier": "`optik evaluate`, `predict`, `attack`, `explain` or `serve`",
        "gan": "`optik sample`, `optik interpolate` or `optik quality`",
        "vae": "`optik sample`, `optik interpolate` or `optik quality`"}


@dataclass
class Run:
    """A run folder and what its ``config.yaml`` says: the command that made it, its kind and resolved config.

    Attributes:
        path: the folder. saved: ``config.yaml`` as written (provenance, ``config``, ``data``).
    """

    path: Path
    saved: dict

    @classmethod
    def open(cls, path: str | os.PathLike, *, kind: str | None = None, finished: bool = True) -> "Run":
        """Open a run folder made by optik; ``kind`` (``classifier``, ``gan``, ``vae``, or ``generative`` for either
        of the last two) refuses a run of another kind by name; ``finished`` requires its saved model."""
        needed = (RUN_MARKER, "model.json", "model.safetensors") if finished else (RUN_MARKER,)
        folder = require_run_dir(path, *needed)
        saved = load_yaml(folder / RUN_MARKER)
        run = cls(folder, saved)
        if run.command not in KINDS:
            raise RunError(f"expected a run of `optik train`, `optik gan train` or `optik vae train`, got "
                           f"{str(folder)!r}, a run of `optik {run.command}`")
        if kind is not None and run.kind != kind and not (kind == "generative" and run.kind in ("gan", "vae")):
            wanted = {"classifier": "a classification run (`optik train`)",
                      "generative": "a run of `optik gan train` or `optik vae train`"}.get(kind, f"a {kind} run")
            raise RunError(f"expected {wanted}, got {str(folder)!r}, a run of `optik {run.command}`; use "
                           f"{HINT[run.kind]} with it")
        return run

    @property
    def command(self) -> str:
        return str(self.saved.get("command", "train"))

    @property
    def kind(self) -> str:
        """``classifier``, ``gan`` or ``vae``."""
        return KINDS[self.command]

    @property
    def config(self):
        """The resolved config the run was made with (TrainConfig, GANConfig or VAEConfig)."""
        return resolve_config(CONFIGS[self.kind], self.saved.get("config", {}))

    def model(self, device: str | torch.device = "cpu"):
        """The trained model: a Classifier, or the GAN generator / VAE (safetensors weights, no pickle)."""
        if self.kind == "classifier":
            from optik.models.io import load_classifier

            return load_classifier(self.path, map_location=device)
        from optik.generative.models import load_generative

        return load_generative(self.path, map_location=device)

    def data(self, **overrides: Any) -> DataHandle:
        """The run's data as split handles, opened with its saved config (``overrides`` on top: ``data`` evaluates
        another dataset, ``stream`` / ``max_memory_gb`` / ``workers`` choose how it is read)."""
        from optik.data.registry import open_data

        values = data_options(self.config)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return open_data(**values)

    def split(self, name: str, **overrides: Any) -> Split:
        """One split of the run's data (see :meth:`data`), or a ConfigError naming the splits there are."""
        handle = self.data(**overrides)
        if name not in handle.splits:
            raise ConfigError(f"expected --split to be one of {sorted(handle.splits)}, got {name!r}")
        return handle.splits[name]


__all__ = ["KINDS", "Run"]
