"""Layers of a classifier by name: which ones output a spatial map (found by tracing a forward pass, not by
hard-coded names), the default Grad-CAM layer, feature maps and first-layer filters.

Layer names are those of ``named_modules()`` of the network: ``model.net`` for an optik
:class:`~optik.models.Classifier` (``"10"`` in an optik CNN, ``"layer4"`` in a timm ResNet; a leading ``"net."``
is accepted too), the module itself otherwise.
"""
from __future__ import annotations

import contextlib
import difflib
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from optik.core.errors import ConfigError
from optik.interpret.base import check_input, device_of, explain_mode
from optik.models.classifier import Classifier

Layer = str | nn.Module | None
MAX_LISTED = 60  # layer names an error message lists (a DenseNet has hundreds)


@dataclass(frozen=True)
class TracedLayer:
    name: str
    module: nn.Module
    shape: tuple[int, ...]  # output shape for the probe input (batch of one)


def network(model: nn.Module) -> nn.Module:
    """The module whose ``named_modules()`` give the layer names: ``model.net`` for a Classifier."""
    return model.net if isinstance(model, Classifier) else model


def conv_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The ``nn.Conv2d`` layers of the network as ``(name, module)``, in registration order (which is execution
    order for optik CNNs and timm's CNNs)."""
    return [(n, m) for n, m in network(model).named_modules() if isinstance(m, nn.Conv2d)]


def _probe(model: nn.Module, x: torch.Tensor | None) -> torch.Tensor:
    """One image to trace with: the first of ``x``, else zeros of a Classifier's input shape."""
    if x is not None:
        return check_input(model, x)[:1]
    if isinstance(model, Classifier):
        return torch.zeros(1, model.in_channels, *model.input_size, device=device_of(model))
    raise ConfigError(f"expected an image batch x to trace a {type(model).__name__} (only an optik Classifier "
                      "knows its input shape); pass x=")


def trace_layers(model: nn.Module, x: torch.Tensor | None = None) -> list[TracedLayer]:
    """Every submodule of the network that returns a tensor, in the order its forward pass finishes (a module
    run twice is listed where it last finished), with its output shape for one image.

    Args:
        model: a Classifier (traced on zeros of its input shape) or any module (then ``x`` is needed).
        x: images ``N x C x H x W`` in [0, 1]; the first is traced.
    """
    probe, names = _probe(model, x), {m: n for n, m in network(model).named_modules() if n}
    order: dict[str, TracedLayer] = {}

    def record(module: nn.Module, _inputs, output) -> None:
        if isinstance(output, torch.Tensor):
            name = names[module]
            order.pop(name, None)
            order[name] = TracedLayer(name, module, tuple(output.shape))

    with explain_mode(model), hooks_on(names, record), torch.no_grad():
        model(probe)
    return list(order.values())


def spatial_layers(model: nn.Module, x: torch.Tensor | None = None) -> list[TracedLayer]:
    """The traced layers whose output is a map ``N x C x h x w``: the valid layers for Grad-CAM and feature maps."""
    return [t for t in trace_layers(model, x) if len(t.shape) == 4]


def default_target_layer(model: nn.Module, x: torch.Tensor | None = None) -> tuple[str, nn.Module]:
    """The last layer whose output is a spatial map of more than one pixel: the last convolutional stage before
    global pooling (``"layer4"`` in a timm ResNet, ``"features"`` in VGG / DenseNet, ``"bn2"`` in an
    EfficientNet, the last activation or pooling before ``gap`` / ``flatten`` in an optik CNN).

    Found by tracing a forward pass (see :func:`trace_layers`). If every map is 1 x 1 (a tiny input), the last map.
    """
    maps = spatial_layers(model, x)
    if not maps:
        raise ConfigError(f"expected a network with convolutional feature maps (N x C x h x w outputs), but "
                          f"{type(network(model)).__name__} has none (a fully connected model?): Grad-CAM and "
                          "feature maps need a convolutional model; use saliency instead")
    wide = [t for t in maps if t.shape[2] * t.shape[3] > 1]
    t = (wide or maps)[-1]
    return t.name, t.module


def resolve_layer(model: nn.Module, layer: Layer, x: torch.Tensor | None = None) -> tuple[str, nn.Module]:
    """``(name, module)`` for a layer given by name, as a module, or ``None`` (:func:`default_target_layer`).

    An unknown name raises a ConfigError listing close matches and the valid (spatial) layer names.
    """
    if layer is None:
        return default_target_layer(model, x)
    modules = dict(network(model).named_modules())
    if isinstance(layer, nn.Module):
        name = next((n for n, m in modules.items() if m is layer), None)
        if name is None:
            raise ConfigError(f"expected a layer of the model, got a {type(layer).__name__} that is not one of its "
                              "modules")
        return name, layer
    key = layer[4:] if isinstance(model, Classifier) and layer.startswith("net.") else layer
    if key and key in modules:
        return key, modules[key]
    raise ConfigError(unknown_layer_message(model, layer, x))


def unknown_layer_message(model: nn.Module, layer: str, x: torch.Tensor | None = None) -> str:
    """'expected one of the layer names ..., got ...', with close matches first."""
    valid = [f"{t.name} ({'x'.join(map(str, t.shape[1:]))})" for t in spatial_layers(model, x)]
    names = [v.split(" ")[0] for v in valid]
    close = difflib.get_close_matches(layer, names, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    shown = ", ".join(valid[-MAX_LISTED:])
    more = f"(the last {MAX_LISTED} of {len(valid)}) " if len(valid) > MAX_LISTED else ""
    return (f"unknown layer {layer!r}.{hint} Expected a layer with a spatial output; valid layers {more}with their "
            f"output C x h x w, input to output: {shown}")


@contextlib.contextmanager
def hooks_on(modules, hook) -> Iterator[None]:
    """Forward ``hook`` on each module for the duration; removed on exit, also when an error is raised."""
    handles = [m.register_forward_hook(hook) for m in modules]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@contextlib.contextmanager
def capture(module: nn.Module) -> Iterator[list]:
    """Collect ``module``'s outputs during a forward pass (a list, one entry per call); the hook is removed on exit.

    The rest of the network gets a copy of each output: later in-place ops (a ResNet block's ``x += shortcut``
    after ``bn2``, ``ReLU(inplace=True)``) would otherwise rewrite the kept tensor, while gradients still flow
    through the kept one.
    """
    seen: list = []

    def keep(_module, _inputs, out):
        seen.append(out)
        return out.clone() if isinstance(out, torch.Tensor) else out

    with hooks_on([module], keep):
        yield seen


def feature_maps(model: nn.Module, x: torch.Tensor, *, layer: Layer = None) -> torch.Tensor:
    """The activations of one layer for images ``x`` (eval mode, no gradients).

    Args:
        model: a Classifier (or any module mapping images to logits).
        x: images in [0, 1].
        layer: a layer name (see :func:`spatial_layers`) or module; default :func:`default_target_layer`.

    Shape:
        ``x``: ``N x C x H x W`` in [0, 1]; returns the layer's output, ``N x C' x h x w`` for a conv layer, on the
        CPU in float32.
    """
    x = check_input(model, x)
    name, module = resolve_layer(model, layer, x)
    with explain_mode(model), capture(module) as seen, torch.no_grad():
        model(x)
    if not seen:
        raise ConfigError(f"layer {name!r} did not run in the forward pass; pick one of: "
                          f"{', '.join(t.name for t in spatial_layers(model, x))}")
    return seen[-1].detach().float().cpu()


def first_layer_filters(model: nn.Module) -> torch.Tensor:
    """The weights of the first convolution (what the network learned to look for in raw pixels).

    Shape:
        ``out x in x kh x kw`` float32 on the CPU (``in`` is the input channels per group); raw values, not
        normalized.
    """
    convs = conv_layers(model)
    if not convs:
        raise ConfigError(f"expected a convolutional network, but {type(network(model)).__name__} has no "
                          "nn.Conv2d layer (a fully connected model such as 'mlp' has no filters to show)")
    return convs[0][1].weight.detach().float().cpu().clone()
