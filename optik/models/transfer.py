"""Transfer learning helpers: load weights from elsewhere (dropping a head of the wrong size or for other
classes), freeze the backbone or all but its last stages (BatchNorm statistics included), and split parameters
into backbone and head groups for discriminative learning rates."""
from __future__ import annotations

import json
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
    """The classifier head: timm's ``get_classifier()`` for zoo / timm models; for optik CNNs the classifier top,
    everything from the flatten / global pooling on (Keras' ``include_top``: the fully connected layers), so
    that the backbone is the convolutional feature extractor."""
    if hasattr(net, "get_classifier"):
        return net.get_classifier()
    if isinstance(net, nn.Sequential):
        for i, m in enumerate(net):
            if isinstance(m, nn.Flatten) or (isinstance(m, nn.Sequential) and any(isinstance(x, nn.Flatten) for x in m)):
                return net[i:]
        return net[-1:]
    raise TypeError(f"cannot find the classifier head of {type(net).__name__}")


def head_parameter_names(net: nn.Module) -> set[str]:
    head = head_module(net)
    ids = {id(p) for p in head.parameters()}
    return {name for name, p in net.named_parameters() if id(p) in ids}


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.is_dir():
        if not (path / "model.safetensors").is_file():
            raise CheckpointError(f"expected a weights file (.safetensors / .pth) or an optik run folder, got the "
                                  f"folder {str(path)!r}, which has no model.safetensors (did its training finish?)")
        path = path / "model.safetensors"
    if not path.is_file():
        raise CheckpointError(f"expected a weights file (.safetensors / .pth) or an optik run folder, got "
                              f"{str(path)!r}, which does not exist")
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = safe_torch_load(path)
    for key in ("state_dict", "model", "net"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_backbone_weights(model: Classifier, path: str | os.PathLike) -> dict[str, list[str]]:
    """Load weights for ``model.net`` from a timm / PyTorch file or an optik run folder.

    Key prefixes (``net.``, ``model.``, ``module.``) are stripped. The head keeps its fresh initialization when
    the source's head has another shape (another number of classes) or, for an optik run folder, other class
    names; any other missing or mis-shaped tensor is an error naming it. From an optik run folder the model also
    takes the source's normalization (mean / std): its features were learned on inputs normalized that way.
    Returns ``{"loaded": [...], "dropped": [...]}``.
    """
    path = Path(path)
    raw = _read_state(path)
    source_meta = _run_meta(path)
    state = {}
    for k, v in raw.items():
        for prefix in _PREFIXES:
            k = k.removeprefix(prefix)
        state[k] = v
    own = model.net.state_dict()
    head_modules = {h.rsplit(".", 1)[0] for h in head_parameter_names(model.net)}
    head = {n for n in own if n.rsplit(".", 1)[0] in head_modules}
    other_classes = source_meta is not None and source_meta.get("classes") != model.classes
    dropped = [k for k in head if k in state and (state[k].shape != own[k].shape or other_classes)]
    for k in dropped:
        del state[k]
    missing = sorted(set(own) - set(state) - set(dropped))
    wrong = sorted(k for k in own.keys() & state.keys() if own[k].shape != state[k].shape)
    if missing or wrong:
        detail = [f"missing: {', '.join(missing[:6])}"] if missing else []
        detail += [f"{k}: expected {tuple(own[k].shape)}, got {tuple(state[k].shape)}" for k in wrong[:6]]
        raise CheckpointError(f"weights in {path} do not fit this architecture:\n  " + "\n  ".join(detail))
    model.net.load_state_dict({k: state[k] for k in own if k in state}, strict=False)
    if source_meta and len(source_meta.get("mean", ())) == model.mean.numel():
        model.mean.copy_(torch.tensor(source_meta["mean"]).view_as(model.mean))
        model.std.copy_(torch.tensor(source_meta["std"]).view_as(model.std))
    return {"loaded": sorted(k for k in own if k in state), "dropped": sorted(dropped)}


def _run_meta(path: Path) -> dict | None:
    """``model.json`` of an optik run folder (or of the folder holding ``model.safetensors``), else None."""
    meta = (path if path.is_dir() else path.parent) / "model.json"
    if path.is_dir() or path.name == "model.safetensors":
        try:
            return json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
    return None


def backbone_stages(net: nn.Module) -> list[list[nn.Parameter]]:
    """The backbone's parameters in stages, input side first; the head is not part of any stage.

    A stage is one of timm's coarse parameter groups for zoo / timm models (stem, then each stage of blocks:
    what timm uses for layer-wise learning-rate decay) and one weight layer with the normalization and pooling
    after it for optik CNNs (a conv block, or a hidden fully connected layer).
    """
    params = dict(net.named_parameters())
    if hasattr(net, "group_matcher"):
        from timm.models import group_parameters

        groups = [[params[n] for n in names] for names in group_parameters(net, net.group_matcher(coarse=True)).values()]
    elif isinstance(net, nn.Sequential):
        groups = []
        for module in net:
            if isinstance(module, (nn.Conv2d, nn.Linear)) or not groups:
                groups.append([])
            groups[-1] += list(module.parameters())
    else:
        groups = [list(child.parameters()) for child in net.children()]
    head = {id(p) for p in head_module(net).parameters()}
    stages = [[p for p in g if id(p) not in head] for g in groups]
    return [s for s in stages if s]


def set_trainable(model: Classifier, stages: int | None) -> list[nn.Module]:
    """Train the head and the last ``stages`` backbone stages (None: everything; 0: the head only).

    Returns the normalization layers of the frozen part, which the caller must keep in eval mode so that their
    running statistics stay those of the pretrained weights (Lightning puts every module in train mode each
    epoch).
    """
    for p in model.net.parameters():
        p.requires_grad_(True)
    if stages is not None:
        all_stages = backbone_stages(model.net)
        for stage in all_stages[:max(0, len(all_stages) - stages)]:
            for p in stage:
                p.requires_grad_(False)
    return [m for m in model.net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            and any(not p.requires_grad for p in m.parameters(recurse=False))]


def freeze_backbone(model: Classifier) -> list[nn.Module]:
    """Feature extraction: train the head only (see :func:`set_trainable`)."""
    return set_trainable(model, 0)


def trainable_stages_at(epoch: int, *, freeze: str, unfreeze_at: int | None, trainable_stages: int | None) -> int | None:
    """How many backbone stages train in ``epoch``: none while frozen, then ``trainable_stages`` (None: all)."""
    if freeze == "backbone" and (unfreeze_at is None or epoch < unfreeze_at):
        return 0
    return trainable_stages


def parameter_groups(model: Classifier, *, lr: float, backbone_lr_scale: float = 1.0,
                     weight_decay: float = 0.0) -> list[dict]:
    """Optimizer groups: backbone at ``lr * backbone_lr_scale`` and head at ``lr`` (discriminative learning
    rates), each split into weights (with ``weight_decay``) and biases / norm parameters (without). Empty groups
    are left out. Frozen parameters are included: they get no gradient, so optimizers skip them (weight decay
    too) until they are unfrozen, and the optimizer need not change when they are."""
    head_ids = {id(p) for p in head_module(model.net).parameters()}
    groups = []
    for is_head in (False, True):
        group_lr = lr if is_head else lr * backbone_lr_scale
        params = [p for p in model.parameters() if (id(p) in head_ids) == is_head]
        groups += [{"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay, "lr": group_lr},
                   {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, "lr": group_lr}]
    return [g for g in groups if g["params"]]
