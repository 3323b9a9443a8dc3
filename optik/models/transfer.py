"""Transfer learning helpers: load weights from elsewhere (dropping a head of the wrong size), freeze the
backbone (BatchNorm statistics included), and split parameters into backbone and head groups."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from optik.core.errors import CheckpointError
from optik.models.classifier import Classifier
from optik.models.io import safe_torch_load

_PREFIXES = ("net.", "model.", "module.")


def head_module(net: nn.Module) -> nn.Module:
    """The classifier head: timm's ``get_classifier()``, else the last module of a Sequential (optik CNNs)."""
    if hasattr(net, "get_classifier"):
        return net.get_classifier()
    if isinstance(net, nn.Sequential):
        return net[-1]
    raise TypeError(f"cannot find the classifier head of {type(net).__name__}")


def head_parameter_names(net: nn.Module) -> set[str]:
    head = head_module(net)
    ids = {id(p) for p in head.parameters()}
    return {name for name, p in net.named_parameters() if id(p) in ids}


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"expected a weights file (.safetensors / .pth) or an optik run folder, got {str(path)!r}")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = safe_torch_load(path)
    for key in ("state_dict", "model", "net"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_backbone_weights(model: Classifier, path: str | os.PathLike) -> dict[str, list[str]]:
    """Load weights for ``model.net`` from a timm / PyTorch file or an optik run folder.

    Key prefixes (``net.``, ``model.``, ``module.``) are stripped. Head tensors whose shape differs (another
    number of classes) are dropped and keep their fresh initialization; any other missing or mis-shaped tensor
    is an error naming it. Returns ``{"loaded": [...], "dropped": [...]}``.
    """
    raw = _read_state(Path(path))
    state = {}
    for k, v in raw.items():
        for prefix in _PREFIXES:
            k = k.removeprefix(prefix)
        state[k] = v
    own = model.net.state_dict()
    head = {n for n in own if n.rsplit(".", 1)[0] in {h.rsplit(".", 1)[0] for h in head_parameter_names(model.net)}}
    dropped = [k for k in head if k in state and state[k].shape != own[k].shape]
    for k in dropped:
        del state[k]
    missing = sorted(set(own) - set(state) - set(dropped))
    wrong = sorted(k for k in own.keys() & state.keys() if own[k].shape != state[k].shape)
    if missing or wrong:
        detail = [f"missing: {', '.join(missing[:6])}"] if missing else []
        detail += [f"{k}: expected {tuple(own[k].shape)}, got {tuple(state[k].shape)}" for k in wrong[:6]]
        raise CheckpointError(f"weights in {path} do not fit this architecture:\n  " + "\n  ".join(detail))
    model.net.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
    return {"loaded": sorted(k for k in own if k in state), "dropped": sorted(dropped)}


def freeze_backbone(model: Classifier) -> list[nn.Module]:
    """Stop gradients everywhere but the head and return the backbone's normalization layers, which the
    caller must keep in eval mode (so their running statistics stay those of the pretrained weights)."""
    head_ids = {id(p) for p in head_module(model.net).parameters()}
    for p in model.net.parameters():
        p.requires_grad_(id(p) in head_ids)
    head = set(head_module(model.net).modules())
    return [m for m in model.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m not in head]


def parameter_groups(model: Classifier, *, lr: float, backbone_lr_scale: float = 1.0,
                     weight_decay: float = 0.0) -> list[dict]:
    """Optimizer groups of the trainable parameters: backbone at ``lr * backbone_lr_scale`` and head at ``lr``
    (discriminative learning rates), each split into weights (with ``weight_decay``) and biases / norm
    parameters (without). Empty groups are left out."""
    head_ids = {id(p) for p in head_module(model.net).parameters()}
    groups = []
    for is_head in (False, True):
        group_lr = lr if is_head else lr * backbone_lr_scale
        params = [p for p in model.parameters() if p.requires_grad and (id(p) in head_ids) == is_head]
        groups += [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay, "lr": group_lr},
                   {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, "lr": group_lr}]
    return [g for g in groups if g["params"]]
