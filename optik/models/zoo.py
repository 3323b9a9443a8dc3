"""The classic model zoo by its Keras Applications names, built with timm.

Each entry carries its contract (timm architecture, native input size) and the reference figures of the Keras
Applications table (https://keras.io/api/applications/: parameters, depth, ImageNet top-1 / top-5), so a user
can compare. Parameter counts measured here differ from Keras' by counting conventions only (Keras counts
BatchNorm moving statistics as parameters, timm/PyTorch keep them as buffers; some timm ports differ in conv
biases or, for EfficientNet, Keras' built-in normalization layer).

Pretrained weights come from the Hugging Face hub through timm (``pretrained=True``): a cached file is used
without touching the network, and an unreachable hub fails within seconds with an :class:`OfflineError` that
names the model, the file and the offline alternative (``--weights PATH``), instead of timm's minute of retries.
"""
from __future__ import annotations

import os
import socket
import urllib.parse
from dataclasses import dataclass

from torch import nn

from optik.core.errors import ConfigError, OfflineError


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

# ImageNet-1k validation top-1 / top-5 (%) of timm's default weights and the image size they were measured at,
# from timm's results/results-imagenet.csv (huggingface/pytorch-image-models @ 0173a139). A tag that is not in
# that file (mobilenetv1_100.ra4_e3600_r224_in1k, newer than it) has no figure: "where known", never guessed.
WEIGHTS_TOP1 = {
    "legacy_xception.tf_in1k": (79.04, 94.382, 299),
    "vgg16.tv_in1k": (71.592, 90.384, 224),
    "vgg19.tv_in1k": (72.378, 90.874, 224),
    "resnet50.a1_in1k": (81.214, 95.102, 288),
    "resnetv2_50.a1h_in1k": (81.398, 95.726, 288),
    "resnet101.a1h_in1k": (82.778, 96.31, 288),
    "resnetv2_101.a1h_in1k": (83.002, 96.454, 288),
    "resnet152.a1h_in1k": (83.45, 96.538, 288),
    "inception_v3.tv_in1k": (77.434, 93.474, 299),
    "inception_resnet_v2.tf_in1k": (80.462, 95.308, 299),
    "mobilenetv2_100.ra_in1k": (72.976, 91.01, 224),
    "densenet121.ra_in1k": (76.5, 93.368, 288),
    "densenet169.tv_in1k": (75.9, 93.028, 224),
    "densenet201.tv_in1k": (77.286, 93.48, 224),
    "nasnetalarge.tf_in1k": (82.626, 96.042, 331),
    "tf_efficientnet_b0.ns_jft_in1k": (78.67, 94.374, 224),
    "tf_efficientnet_b1.ns_jft_in1k": (81.394, 95.736, 240),
    "tf_efficientnet_b2.ns_jft_in1k": (82.378, 96.254, 260),
    "tf_efficientnet_b3.ns_jft_in1k": (84.056, 96.918, 300),
    "tf_efficientnet_b4.ns_jft_in1k": (85.162, 97.47, 380),
    "tf_efficientnet_b5.ns_jft_in1k": (86.088, 97.754, 456),
    "tf_efficientnet_b6.ns_jft_in1k": (86.456, 97.884, 528),
    "tf_efficientnet_b7.ns_jft_in1k": (86.84, 98.094, 600),
    "mnasnet_100.rmsp_in1k": (74.65, 92.124, 224),
}


def build_timm(name: str, *, num_classes: int, in_channels: int = 3, pretrained: bool = False) -> nn.Module:
    """A timm model with ``num_classes`` outputs; random weights, or its default hub weights with ``pretrained``
    (``name`` may carry a weights tag, ``resnet50.a1_in1k``). The classifier head is new whenever
    ``num_classes`` differs from the weights' (timm drops it)."""
    timm = _timm()
    if not timm.is_model(name):
        raise ConfigError(f"timm has no architecture {name!r}")
    if not pretrained:
        return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)
    file = pretrained_file(name)
    overlay = {"file": file, "source": ""} if file else None
    try:
        return timm.create_model(name, pretrained=True, num_classes=num_classes, in_chans=in_channels,
                                 pretrained_cfg_overlay=overlay)
    except (OSError, ConnectionError) as e:  # huggingface_hub's errors derive from these
        raise _offline(name, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def _timm():
    try:
        import timm
    except ImportError:
        raise ConfigError("the model zoo needs timm: pip install timm") from None
    return timm


def pretrained_file(name: str) -> str | None:
    """The local path of ``name``'s default hub weights when they are in the Hugging Face cache, else None.

    Raises :class:`ConfigError` when timm has no pretrained weights for ``name`` and :class:`OfflineError`
    when they are not cached and the hub cannot be reached (checked with a 3-second connection, not timm's
    minute of retries).
    """
    timm = _timm()
    try:
        cfg = timm.get_pretrained_cfg(name, allow_unregistered=False)
    except RuntimeError:  # an unknown tag
        cfg = None
    if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
        tags = timm.list_pretrained(name.split(".")[0] + ".*")
        raise ConfigError(f"timm has no pretrained weights for {name!r}"
                          + (f"; tags with weights: {', '.join(tags)}" if tags else "")
                          + ". Train from scratch, or pass your own weights with --weights PATH")
    if cfg.hf_hub_id:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        repo, _, revision = cfg.hf_hub_id.partition("@")
        names = [cfg.hf_hub_filename] if cfg.hf_hub_filename else ["model.safetensors", "pytorch_model.bin"]
        for filename in names:
            try:
                return hf_hub_download(repo, filename, revision=revision or None, local_files_only=True)
            except (LocalEntryNotFoundError, FileNotFoundError, OSError):
                continue
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise _offline(name, "HF_HUB_OFFLINE is set and the weights are not in the local cache")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urllib.parse.urlparse(endpoint if cfg.hf_hub_id else cfg.url or endpoint)
    try:
        socket.create_connection((host.hostname, host.port or (443 if host.scheme == "https" else 80)),
                                 timeout=3).close()
    except OSError as e:
        raise _offline(name, f"cannot reach {host.hostname} ({e})") from None
    return None  # reachable: timm downloads into the cache


def _offline(name: str, why: str) -> OfflineError:
    cfg = _timm().get_pretrained_cfg(name)
    where = f"the hub repository {cfg.hf_hub_id!r}" if cfg and cfg.hf_hub_id else (cfg.url if cfg else "the hub")
    return OfflineError(
        f"cannot get the pretrained weights of {name!r} from {where}: {why}. You seem to be offline. Either "
        f"download them on a connected machine (`huggingface-cli download {cfg.hf_hub_id if cfg else name}`) and "
        f"copy the Hugging Face cache (HF_HOME) here, or pass a local file with --weights PATH "
        f"(.safetensors / .pth in timm format, or an optik run folder) instead of --pretrained"
    )


def _zoo_factory(timm_name: str):
    def build(*, in_channels: int, input_size, num_classes: int, pretrained: bool = False) -> nn.Module:
        return build_timm(timm_name, in_channels=in_channels, num_classes=num_classes, pretrained=pretrained)

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
        tags = [t.split(".", 1)[1] for t in timm.list_pretrained(e.timm + ".*")]
        default = None
        if tags:  # timm's default tag (what --pretrained loads) first; the list is otherwise alphabetical
            tag = timm.get_pretrained_cfg(e.timm).tag
            tags = [tag] + [t for t in tags if t != tag]
            default = f"{e.timm}.{tag}"
        top1, top5, size = WEIGHTS_TOP1.get(default, (None, None, None))
        rows.append({
            "keras": e.keras, "timm": e.timm, "params_m": round(sum(p.numel() for p in net.parameters()) / 1e6, 1),
            "keras_params_m": e.keras_params_m, "keras_depth": e.keras_depth, "input_size": e.input_size,
            "keras_top1": e.keras_top1, "keras_top5": e.keras_top5, "pretrained": tags,
            "weights": default, "weights_top1": top1, "weights_top5": top5, "weights_eval_size": size,
        })
    if fnmatch.fnmatch("nasnetmobile", pattern.lower()):
        rows.append({"keras": "NASNetMobile", "timm": None, "params_m": None, "keras_params_m": 5.3,
                     "keras_depth": 389, "input_size": 224, "keras_top1": 74.4, "keras_top5": 91.9,
                     "pretrained": [], "weights": None, "weights_top1": None, "weights_top5": None,
                     "weights_eval_size": None, "note": f"no timm architecture; use {NASNET_MOBILE_SUBSTITUTE}"})
    return rows
