"""A CNN from a readable spec string: the layers a lecture on CNNs names, one token each.

Grammar (tokens separated by spaces)::

    conv(OUT, k=3, s=1, p=same, d=1)   convolution: kernel, stride, padding (int or "same"), dilation
    maxpool(K, s=K, p=0)  avgpool(K, s=K, p=0)  gap (global average pool, then flatten)
    bn  relu  gelu  silu  tanh  sigmoid  leakyrelu(0.01)  dropout(P)  flatten
    fc(N)     fully connected; a final bare ``fc`` maps to the number of classes (added if missing)

Example: ``conv(32,k=5,p=2) bn relu maxpool(2) conv(64,k=3,d=2,p=2) relu gap fc`` -- the model returns logits;
softmax is applied only when reporting probabilities.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
from torch import nn

from optik.core.errors import ConfigError

_TOKEN = re.compile(r"([a-z_0-9]+)(?:\(([^)]*)\))?", re.IGNORECASE)
_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
_KEYS = {"conv": ("out", "k", "s", "p", "d"), "maxpool": ("k", "s", "p"), "avgpool": ("k", "s", "p"),
         "fc": ("out",), "dropout": ("p",), "leakyrelu": ("slope",)}


@dataclass(frozen=True)
class Layer:
    kind: str
    args: dict = field(default_factory=dict)

    def __str__(self) -> str:
        if not self.args:
            return self.kind
        return f"{self.kind}({','.join(f'{k}={v}' for k, v in self.args.items())})"


def parse_spec(spec: str) -> list[Layer]:
    """Parse a spec string into layers; raise a ConfigError pointing at the first token that does not fit."""
    layers, pos = [], 0
    spec = spec.strip()
    while pos < len(spec):
        if spec[pos] in " \t\n,-":
            pos += 1
            continue
        m = _TOKEN.match(spec, pos)
        if not m:
            raise ConfigError(f"CNN spec: cannot read {spec[pos:pos + 20]!r} at character {pos} of {spec!r}")
        layers.append(_layer(m.group(1).lower(), m.group(2), spec))
        pos = m.end()
    if not layers:
        raise ConfigError("CNN spec is empty; expected layers such as 'conv(32,k=3) relu maxpool(2) fc'")
    return layers


def _layer(kind: str, argtext: str | None, spec: str) -> Layer:
    if kind == "softmax":
        raise ConfigError("CNN spec: leave out 'softmax': models return logits, and optik applies softmax when "
                          "reporting probabilities (the loss applies log-softmax itself)")
    known = set(_KEYS) | set(_ACTIVATIONS) | {"bn", "flatten", "gap"}
    if kind not in known:
        raise ConfigError(f"CNN spec {spec!r}: unknown layer {kind!r}; expected one of {', '.join(sorted(known))}")
    args: dict = {}
    names = _KEYS.get(kind, ())
    for i, part in enumerate(p.strip() for p in (argtext or "").split(",") if p.strip()):
        key, _, value = part.rpartition("=")
        key = key.strip() or (names[i] if i < len(names) else "")
        if key not in names:
            raise ConfigError(f"CNN spec: layer {kind!r} takes {', '.join(names) or 'no arguments'}, got {part!r}")
        args[key] = _number(value.strip(), kind, key)
    if kind == "conv" and "out" not in args:
        raise ConfigError(f"CNN spec: conv needs its number of output channels, e.g. conv(32,k=3); got {spec!r}")
    if kind in ("maxpool", "avgpool") and "k" not in args:
        args["k"] = 2
    for key in ("out", "k", "s", "d"):
        if key in args and not (isinstance(args[key], int) and args[key] >= 1):
            raise ConfigError(f"CNN spec: {kind}({key}=...) expected an integer >= 1, got {args[key]!r}")
    if "p" in args and kind != "dropout" and args["p"] != "same" and not (isinstance(args["p"], int) and args["p"] >= 0):
        raise ConfigError(f"CNN spec: {kind}(p=...) expected an integer padding >= 0 or 'same', got {args['p']!r}")
    if kind == "dropout" and not 0 <= args.get("p", 0.5) < 1:
        raise ConfigError(f"CNN spec: dropout probability must lie in [0, 1), got {args['p']}")
    return Layer(kind, args)


def _number(value: str, kind: str, key: str):
    if value == "same":
        return value
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"CNN spec: {kind}({key}=...) expected a number, got {value!r}") from None


# The largest network a spec may describe, checked before any layer is allocated: a model.json or a typo asking
# for fc(100000000000) must be refused by its numbers, not by an allocator failing.
MAX_PARAMETERS = 2_000_000_000  # 8 GB of float32 weights


def build_cnn(spec: str, *, in_channels: int, input_size: tuple[int, int], num_classes: int) -> nn.Sequential:
    """Build the network of ``spec`` for inputs ``in_channels x H x W``; raise where a layer cannot fit."""
    layers = parse_spec(spec)
    if layers[-1].kind != "fc" or "out" in layers[-1].args:
        layers.append(Layer("fc"))
    modules: list[nn.Module] = []
    shape = (in_channels, *input_size)  # C x H x W, or (F,) after flatten
    total = 0
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        total += _parameters(layer, shape, num_classes if last else None)
        if total > MAX_PARAMETERS:
            raise ConfigError(f"CNN spec: layer {i + 1} ({layer}) brings the network to {total:,} parameters; optik "
                              f"builds networks of up to {MAX_PARAMETERS:,} (input {in_channels} x "
                              f"{input_size[0]} x {input_size[1]})")
        module, shape = _module(layer, shape, num_classes if last else None, layers[i + 1:])
        if any(s <= 0 for s in shape):
            raise ConfigError(f"CNN spec: layer {i + 1} ({layer}) shrinks the feature map to {shape}; use fewer "
                              f"pooling layers, more padding, or a larger image size (input {input_size})")
        modules.append(module)
    return nn.Sequential(*modules)


def _module(layer: Layer, shape: tuple, num_classes: int | None, rest: list[Layer]) -> tuple[nn.Module, tuple]:
    a, kind = layer.args, layer.kind
    spatial = len(shape) == 3
    if kind in ("conv", "maxpool", "avgpool") and not spatial:
        raise ConfigError(f"CNN spec: {layer} comes after flatten/gap/fc; image layers must come first")
    if kind == "conv":
        k, s, d = a.get("k", 3), a.get("s", 1), a.get("d", 1)
        p = a.get("p", 0)
        if p == "same":
            if s != 1:
                raise ConfigError(f"CNN spec: {layer}: padding 'same' needs stride 1")
            p = d * (k - 1) // 2
        bias = not (rest and rest[0].kind == "bn")  # a following BatchNorm makes the bias redundant
        conv = nn.Conv2d(shape[0], a["out"], k, stride=s, padding=p, dilation=d, bias=bias)
        return conv, (a["out"], *(_out(n, k, s, p, d) for n in shape[1:]))
    if kind in ("maxpool", "avgpool"):
        k, s, p = a["k"], a.get("s", a["k"]), a.get("p", 0)
        pool = nn.MaxPool2d(k, s, p) if kind == "maxpool" else nn.AvgPool2d(k, s, p)
        return pool, (shape[0], *(_out(n, k, s, p, 1) for n in shape[1:]))
    if kind == "bn":
        return (nn.BatchNorm2d(shape[0]) if spatial else nn.BatchNorm1d(shape[0])), shape
    if kind == "gap":
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), (shape[0],)
    if kind == "flatten":
        return nn.Flatten(), (int(torch.tensor(shape).prod()),)
    if kind == "fc":
        out = a.get("out", num_classes)
        if out is None:
            raise ConfigError("CNN spec: only the last fc may leave out its size (it maps to the classes)")
        flat = int(torch.tensor(shape).prod())
        fc = nn.Linear(flat, out)
        return (nn.Sequential(nn.Flatten(), fc) if spatial else fc), (out,)
    if kind == "dropout":
        return nn.Dropout(a.get("p", 0.5)), shape
    if kind == "leakyrelu":
        return nn.LeakyReLU(a.get("slope", 0.01)), shape
    return _ACTIVATIONS[kind](), shape


def _parameters(layer: Layer, shape: tuple, num_classes: int | None) -> int:
    """Weights and biases ``layer`` would hold on an input of ``shape`` (Python integers: no overflow)."""
    a = layer.args
    if layer.kind == "conv":
        return int(shape[0]) * int(a["out"]) * int(a.get("k", 3)) ** 2 + int(a["out"])
    if layer.kind == "fc":
        out = a.get("out", num_classes) or 0
        flat = 1
        for n in shape:
            flat *= int(n)
        return (flat + 1) * int(out)
    return 2 * int(shape[0]) if layer.kind == "bn" else 0


def _out(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1
