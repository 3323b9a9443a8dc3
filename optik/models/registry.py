"""Models by name: each entry builds a network from (in_channels, input_size, num_classes)."""
from __future__ import annotations

import math
from typing import Sequence

from torch import nn

from optik.core.errors import ConfigError
from optik.core.registry import Registry
from optik.models.classifier import Classifier
from optik.models.cnn import build_cnn, parse_spec
from optik.models.zoo import build_timm, is_timm_model, register_zoo

MODELS: Registry[nn.Module] = Registry("model")

def default_cnn_spec(input_size: Sequence[int]) -> str:
    """The default CNN for an input size: conv-BN-ReLU-maxpool blocks until the map is about 7 px, then
    dropout and two fully connected layers.

    28 x 28 (MNIST) gets two blocks (5x5 kernels, 32 and 64 channels: the classic MNIST CNN with BatchNorm);
    every doubling of the image adds a block (3x3 kernels, channels doubling up to 256).
    """
    side = min(int(s) for s in input_size)
    blocks = max(1, math.ceil(math.log2(side / 7)))
    layers = []
    for i in range(blocks):
        k = 5 if i < 2 else 3
        layers.append(f"conv({min(32 * 2 ** i, 256)},k={k},p=same) bn relu maxpool(2)")
    return " ".join(layers) + " flatten dropout(0.4) fc(128) relu fc"


CNN_SPECS = {
    "cnn-small": ("conv(16,k=3,p=1) bn relu maxpool(2) conv(32,k=3,p=1) bn relu maxpool(2) "
                  "conv(64,k=3,p=1) bn relu gap fc",
                  "a small BatchNorm CNN for quick experiments and tests"),
    "lenet5": ("conv(6,k=5,p=2) tanh avgpool(2) conv(16,k=5) tanh avgpool(2) flatten fc(120) tanh fc(84) tanh fc",
               "LeNet-5 (LeCun et al. 1998) with tanh and average pooling"),
    "mlp": ("flatten fc(256) relu dropout(0.2) fc(128) relu fc", "a fully connected baseline, no convolutions"),
}


def register_model(name: str, *, summary: str, **meta):
    """Register ``fn(*, in_channels, input_size, num_classes) -> nn.Module`` returning logits."""
    return MODELS.register(name, summary=summary, **meta)


def _spec_factory(spec: str):
    def build(*, in_channels: int, input_size: tuple[int, int], num_classes: int) -> nn.Module:
        return build_cnn(spec, in_channels=in_channels, input_size=input_size, num_classes=num_classes)

    return build


MODELS.add("cnn", lambda *, in_channels, input_size, num_classes: build_cnn(
    default_cnn_spec(input_size), in_channels=in_channels, input_size=input_size, num_classes=num_classes),
    summary="the default: BatchNorm CNN sized from the input (28x28: conv5-32, conv5-64, fc128)", family="cnn",
    spec=default_cnn_spec)
for _name, (_spec, _summary) in CNN_SPECS.items():
    MODELS.add(_name, _spec_factory(_spec), summary=_summary, family="cnn", spec=_spec)


register_zoo(MODELS)


def list_models(pattern: str = "*", *, input_size: Sequence[int] = (28, 28)) -> list[dict]:
    """Registered models; a spec that depends on the input size is shown for ``input_size``."""
    rows = []
    for e in MODELS.entries(pattern):
        meta = dict(e.meta)
        if callable(meta.get("spec")):
            meta["spec"] = f"{meta['spec'](input_size)}  (for {input_size[0]}x{input_size[1]})"
        rows.append({"name": e.name, "summary": e.summary, **meta})
    return rows


def resolve_arch(model: str, input_size: Sequence[int] = (28, 28)) -> dict:
    """A model name or a CNN spec string -> ``{"name": ..., "spec": ...}`` as stored in ``model.json``.

    The stored spec is concrete (sized for ``input_size``), so a saved model rebuilds exactly; zoo entries also
    store their timm architecture.
    """
    if model in MODELS:
        entry = MODELS.get(model)
        spec = entry.meta.get("spec")
        spec = spec(input_size) if callable(spec) else spec
        timm_name = entry.meta.get("timm")
        return {"name": entry.name, **({"spec": spec} if spec else {}), **({"timm": timm_name} if timm_name else {})}
    if is_timm_model(model):  # any timm architecture by its timm name
        return {"name": "timm", "timm": model}
    if "(" in model or " " in model.strip():
        parse_spec(model)  # validate now, with a clear message
        return {"name": "spec", "spec": model}
    MODELS.get(model)  # raises with suggestions
    raise AssertionError("unreachable")


MAX_SIDE = 16_384  # pixels on a side a network is built for (an image is decoded up to 50 megapixels)
MAX_CLASSES = 1_000_000


def check_input_shape(in_channels: int, size: Sequence[int], num_classes: int) -> None:
    """Refuse, by their numbers, input sizes and class counts no network here is built for (a tampered
    ``model.json`` asking for 60000 x 60000 inputs would otherwise fail in an allocator)."""
    if not (len(size) == 2 and all(0 <= s <= MAX_SIDE for s in size)):
        raise ConfigError(f"expected an input size H x W of at most {MAX_SIDE} x {MAX_SIDE} pixels, got "
                          f"{' x '.join(map(str, size))}")
    if in_channels not in (1, 3):
        raise ConfigError(f"expected 1 or 3 input channels, got {in_channels}")
    if not 2 <= num_classes <= MAX_CLASSES:
        raise ConfigError(f"expected 2 to {MAX_CLASSES:,} classes, got {num_classes:,}")


def build_network(arch: dict, *, in_channels: int, input_size: Sequence[int], num_classes: int,
                  pretrained: bool = False) -> nn.Module:
    """The network ``arch`` describes; ``in_channels`` and ``input_size`` are what the network itself sees."""
    size = tuple(int(s) for s in input_size)
    check_input_shape(in_channels, size, num_classes)
    if arch.get("spec"):
        return build_cnn(arch["spec"], in_channels=in_channels, input_size=size, num_classes=num_classes)
    if arch.get("timm"):
        return build_timm(arch["timm"], in_channels=in_channels, num_classes=num_classes, pretrained=pretrained)
    if arch.get("name") not in MODELS:
        raise ConfigError(f"model.json names architecture {arch.get('name')!r}, which this optik does not know")
    return MODELS.create(arch["name"], in_channels=in_channels, input_size=size, num_classes=num_classes)


def create_classifier(model: str, *, classes: Sequence[str], in_channels: int, input_size: Sequence[int],
                      mean: Sequence[float] | None = None, std: Sequence[float] | None = None,
                      net_input_size: int | Sequence[int] | None = None, pretrained: bool = False) -> Classifier:
    """Build a Classifier from a model name or CNN spec for data of ``in_channels`` x ``input_size``.

    optik CNNs are built for the data's channels and size (or ``net_input_size``) and normalize with ``mean`` /
    ``std`` (the training pixels' statistics). Zoo and timm models keep their own contract: 3 channels (grayscale
    data is repeated), their native input size unless ``net_input_size`` says otherwise (the Classifier
    resizes), and their pretrained mean / std. ``pretrained`` loads the default hub weights (zoo / timm only).
    """
    if isinstance(net_input_size, int):
        net_input_size = (net_input_size, net_input_size)
    data_size = tuple(int(s) for s in input_size)
    arch = resolve_arch(model, net_input_size or data_size)
    if arch.get("timm"):
        net = build_network(arch, in_channels=3, input_size=(0, 0), num_classes=len(classes), pretrained=pretrained)
        cfg = net.pretrained_cfg
        net_channels = cfg["input_size"][0]
        size = tuple(net_input_size or cfg["input_size"][1:])
        mean, std = list(cfg["mean"]), list(cfg["std"])
    else:
        if pretrained:
            raise ConfigError(f"--pretrained needs a zoo or timm model, and {model!r} is an optik CNN without hub "
                              "weights: train it on your source data and pass that run folder with --weights RUN")
        net_channels, size = in_channels, tuple(net_input_size or data_size)
        net = build_network(arch, in_channels=in_channels, input_size=size, num_classes=len(classes))
        mean, std = mean or [0.5] * in_channels, std or [0.5] * in_channels
    if in_channels not in (1, net_channels):
        raise ConfigError(f"{model!r} takes images with {net_channels} channels (or grayscale), "
                          f"got data with {in_channels}")
    return Classifier(net, classes=classes, in_channels=in_channels, input_size=data_size, mean=mean, std=std,
                      arch=arch, net_channels=net_channels, net_input_size=size)
