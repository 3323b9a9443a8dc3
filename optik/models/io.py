"""Save and load a Classifier as ``model.safetensors`` + ``model.json``: no pickle, ever."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from optik.core.errors import CheckpointError, OptikError, RunError, short
from optik.core.io import atomic_write, write_json
from optik.models.classifier import Classifier
from optik.models.registry import build_network, check_input_shape

WEIGHTS, META = "model.safetensors", "model.json"


def save_classifier(model: Classifier, folder: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` and ``model.json`` atomically into ``folder``."""
    return save_model(model, folder)


def save_model(model: torch.nn.Module, folder: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` (weights, on the CPU) and ``model.json`` (``model.describe()``, whose ``format``
    also tags the weights file) atomically into ``folder``."""
    folder = Path(folder)
    meta = model.describe()
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(folder / WEIGHTS, lambda p: save_file(state, str(p), metadata={"format": meta["format"]}))
    write_json(folder / META, meta)
    return folder


def safe_torch_load(path: str | os.PathLike, *, map_location: str | torch.device = "cpu"):
    """``torch.load(weights_only=True)``: tensors and plain containers only; anything else is refused, unrun."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - UnpicklingError, EOFError, RuntimeError(zip): all mean "not loadable"
        # Not torch's whole message: it advises weights_only=False, which would run the file.
        raise CheckpointError(
            f"refusing to load {path}: expected a plain weights file (tensors only), got one torch cannot read "
            f"that way ({type(e).__name__}: {_torch_reason(str(e))})"
        ) from None


def _torch_reason(text: str) -> str:
    """What torch found in the file (e.g. ``Unsupported global: GLOBAL pkg.Class``), else its first line that does
    not advise ``weights_only``."""
    found = re.search(r"Unsupported (?:global|operand)[^\n]*?(?= was not|\n|$)", text)
    if found:
        return found.group(0)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and "weights_only" not in ln]
    return lines[0] if lines else ""


def load_classifier(folder: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> Classifier:
    """Rebuild a Classifier from a run folder (or any folder with ``model.json`` + ``model.safetensors``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise RunError(f"expected a run folder with {META} and {WEIGHTS}, got {str(folder)!r}, which does not exist")
    for name in (META, WEIGHTS):
        if not (folder / name).is_file():
            raise RunError(f"run folder {str(folder)!r} has no {name}; did its training finish? "
                           f"(`optik train --resume {folder}` continues an interrupted run)")
    try:
        meta = json.loads((folder / META).read_text(encoding="utf-8"))
        if meta.get("format") == "optik.Generative/1":
            raise RunError(f"expected a classifier, got {str(folder)!r}, which holds a {meta.get('kind', '?').upper()}"
                           f"; use `optik sample`, `optik interpolate` or `optik quality` with it")
        net_channels = meta.get("net_channels", meta["in_channels"])
        net_size = meta.get("net_input_size", meta["input_size"])
        check_input_shape(int(meta["in_channels"]), [int(v) for v in meta["input_size"]], len(meta["classes"]))
        net = build_network(meta["arch"], in_channels=net_channels, input_size=net_size,
                            num_classes=len(meta["classes"]))
        model = Classifier(net, classes=meta["classes"], in_channels=meta["in_channels"],
                           input_size=meta["input_size"], mean=meta["mean"], std=meta["std"], arch=meta["arch"],
                           net_channels=net_channels, net_input_size=net_size)
    except OptikError:
        raise
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{folder / META} is not a valid optik model description ({short(e, 200)})") from None
    load_weights(model, folder / WEIGHTS)
    return model.to(map_location).eval()


def load_weights(model: torch.nn.Module, path: str | os.PathLike) -> None:
    """Load safetensors weights into ``model``; name every missing, unexpected or mis-shaped tensor on failure."""
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    check_state_dict(model, state, source=str(path))
    model.load_state_dict(state)


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], *, source: str) -> None:
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: expected {tuple(own[k].shape)}, got {tuple(state[k].shape)}"
              for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
    if missing or unexpected or shapes:
        lines = ([f"missing: {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}"] if missing else []) + \
                ([f"unexpected: {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}"] if unexpected else []) + \
                [f"shape {s}" for s in sorted(shapes)[:8]]
        raise CheckpointError(
            f"weights in {source} do not fit this model (another architecture or number of classes?):\n  "
            + "\n  ".join(lines)
        )
