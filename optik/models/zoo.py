"""The classic model zoo by its Keras Applications names, built with timm.

Each entry carries its contract (timm architecture, native input size) and the reference figures of the Keras
Applications table (https://keras.io/api/applications/: parameters, depth, ImageNet top-1 / top-5), so a user
can compare. Parameter counts measured here differ from Keras' by counting conventions only (Keras counts
BatchNorm moving statistics as parameters, timm/PyTorch keep them as buffers; some timm ports differ in conv
biases or, for EfficientNet, Keras' built-in normalization layer).

Work in progress for issue #3: hub weights (`--pretrained`), gradual unfreezing and resizing inputs to the
native size are not built yet. Local weights, a frozen backbone and discriminative learning rates are in
:mod:`optik.models.transfer`.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from optik.core.errors import ConfigError


@dataclass(frozen=True)
class ZooEntry:
    keras: str            # the Keras Applications name
    timm: str             # the timm architecture it maps to
    input_size: int       # native input size (square)
    keras_params_m: float  # parameters in the Keras table (millions, with the 1000-class head)
    keras_depth: int
    keras_top1: float     # ImageNet top-1 / top-5 (%) reported by Keras
    keras_top5: float


ZOO = [
    ZooEntry("Xception", "legacy_xception", 299, 22.9, 81, 79.0, 94.5),
    ZooEntry("VGG16", "vgg16", 224, 138.4, 16, 71.3, 90.1),
    ZooEntry("VGG19", "vgg19", 224, 143.7, 19, 71.3, 90.0),
    ZooEntry("ResNet50", "resnet50", 224, 25.6, 107, 74.9, 92.1),
    ZooEntry("ResNet50V2", "resnetv2_50", 224, 25.6, 103, 76.0, 93.0),
    ZooEntry("ResNet101", "resnet101", 224, 44.7, 209, 76.4, 92.8),
    ZooEntry("ResNet101V2", "resnetv2_101", 224, 44.7, 205, 77.2, 93.8),
    ZooEntry("ResNet152", "resnet152", 224, 60.4, 311, 76.6, 93.1),
    ZooEntry("ResNet152V2", "resnetv2_152", 224, 60.4, 307, 78.0, 94.2),
    ZooEntry("InceptionV3", "inception_v3", 299, 23.9, 189, 77.9, 93.7),
    ZooEntry("InceptionResNetV2", "inception_resnet_v2", 299, 55.9, 449, 80.3, 95.3),
    ZooEntry("MobileNet", "mobilenetv1_100", 224, 4.3, 55, 70.4, 89.5),
    ZooEntry("MobileNetV2", "mobilenetv2_100", 224, 3.5, 105, 71.3, 90.1),
    ZooEntry("DenseNet121", "densenet121", 224, 8.1, 242, 75.0, 92.3),
    ZooEntry("DenseNet169", "densenet169", 224, 14.3, 338, 76.2, 93.2),
    ZooEntry("DenseNet201", "densenet201", 224, 20.2, 402, 77.3, 93.6),
    ZooEntry("NASNetLarge", "nasnetalarge", 331, 88.9, 533, 82.5, 96.0),
    *[ZooEntry(f"EfficientNetB{i}", f"tf_efficientnet_b{i}", size, params, depth, top1, top5)
      for i, (size, params, depth, top1, top5) in enumerate([
          (224, 5.3, 132, 77.1, 93.3), (240, 7.9, 186, 79.1, 94.4), (260, 9.2, 186, 80.1, 94.9),
          (300, 12.3, 210, 81.6, 95.7), (380, 19.5, 258, 82.9, 96.4), (456, 30.6, 312, 83.6, 96.7),
          (528, 43.3, 360, 84.0, 96.8), (600, 66.7, 438, 84.3, 97.0)])],
]
NASNET_MOBILE_SUBSTITUTE = "mnasnet_100"


def build_timm(name: str, *, in_channels: int, num_classes: int) -> nn.Module:
    """A timm model with random weights, ``num_classes`` outputs and ``in_channels`` input channels."""
    try:
        import timm
    except ImportError:
        raise ConfigError("the model zoo needs timm: pip install timm") from None
    if not timm.is_model(name):
        raise ConfigError(f"timm has no architecture {name!r}")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)


def _zoo_factory(timm_name: str):
    def build(*, in_channels: int, input_size, num_classes: int) -> nn.Module:
        return build_timm(timm_name, in_channels=in_channels, num_classes=num_classes)

    return build


def _nasnet_mobile(**_) -> nn.Module:
    raise ConfigError(
        "NASNetMobile has no timm architecture, so optik cannot build it. The documented substitute is "
        f"{NASNET_MOBILE_SUBSTITUTE!r} (MnasNet 1.0, a mobile architecture from a NAS search of the same family, "
        f"4.4M parameters): pass --model {NASNET_MOBILE_SUBSTITUTE}"
    )


def is_timm_model(name: str) -> bool:
    try:
        import timm
    except ImportError:
        return False
    return timm.is_model(name)


def register_zoo(registry) -> None:
    for e in ZOO:
        registry.add(e.keras, _zoo_factory(e.timm), summary=f"Keras {e.keras} as timm {e.timm}", family="zoo",
                     timm=e.timm, native_input=e.input_size, keras_params_m=e.keras_params_m,
                     keras_depth=e.keras_depth, keras_top1=e.keras_top1, keras_top5=e.keras_top5)
    registry.add("NASNetMobile", _nasnet_mobile, summary=f"not in timm: use {NASNET_MOBILE_SUBSTITUTE}",
                 family="zoo", timm=None)


def zoo_table(pattern: str = "*") -> list[dict]:
    """One row per zoo entry: the Keras reference figures and what timm builds (parameters counted on the
    ``meta`` device: no memory, no initialization, a fraction of a second for the whole zoo)."""
    import fnmatch

    import timm
    import torch

    rows = []
    for e in ZOO:
        if not fnmatch.fnmatch(e.keras.lower(), pattern.lower()):
            continue
        with torch.device("meta"):
            net = timm.create_model(e.timm, pretrained=False)
        rows.append({
            "keras": e.keras, "timm": e.timm, "params_m": round(sum(p.numel() for p in net.parameters()) / 1e6, 1),
            "keras_params_m": e.keras_params_m, "keras_depth": e.keras_depth, "input_size": e.input_size,
            "keras_top1": e.keras_top1, "keras_top5": e.keras_top5,
            "pretrained": [t.split(".", 1)[1] for t in timm.list_pretrained(e.timm + ".*")],
        })
    if fnmatch.fnmatch("nasnetmobile", pattern.lower()):
        rows.append({"keras": "NASNetMobile", "timm": None, "params_m": None, "keras_params_m": 5.3,
                     "keras_depth": 389, "input_size": 224, "keras_top1": 74.4, "keras_top5": 91.9,
                     "pretrained": [], "note": f"no timm architecture; use {NASNET_MOBILE_SUBSTITUTE}"})
    return rows
