"""Interpretability against references: Grad-CAM vs pytorch-grad-cam, saliency vs float64 autograd and finite
differences, feature maps vs slicing the network; a pinned localisation case; the model's mode, flags and hooks."""
import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import optik
from optik.core.errors import ConfigError, DataError
from optik.interpret import (conv_layers, default_target_layer, feature_maps, first_layer_filters, gradcam,
                             overlay, saliency)
from optik.interpret_api import explain, explain_examples, filters_figure
from optik.models.io import save_classifier
from optik.models.registry import create_classifier

pgc = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

CLASSES = ["zero", "one", "two"]


def _cnn(channels: int = 1, size: int = 28, seed: int = 0, spec: str = "cnn-small"):
    torch.manual_seed(seed)
    return create_classifier(spec, classes=CLASSES, in_channels=channels, input_size=(size, size),
                             mean=[0.4] * channels, std=[0.3] * channels)


def _images(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, channels, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(scope="module")
def resnet():
    """A timm ResNet-18 with random weights that sees 64 x 64 images (layer4 maps are 2 x 2)."""
    torch.manual_seed(0)
    model = create_classifier("resnet18", classes=CLASSES, in_channels=3, input_size=(64, 64), net_input_size=64)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # timm zero-initializes each block's last BatchNorm: give every BatchNorm real weights
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=gen))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
    return model


def _reference_cam(model, module, x, targets):
    """pytorch-grad-cam's final maps, and its raw ReLU'd maps at the layer's resolution (from its own hooks)."""
    with pgc.GradCAM(model=model, target_layers=[module]) as cam:
        final = cam(input_tensor=x, targets=None if targets is None else [ClassifierOutputTarget(int(t))
                                                                          for t in targets])
        acts = cam.activations_and_grads.activations[0].numpy()
        grads = cam.activations_and_grads.gradients[0].numpy()
        raw = np.maximum(cam.get_cam_image(x, module, None, acts, grads), 0)
    return final, raw


# ------------------------------------------------------------------------------------------ Grad-CAM
@pytest.mark.parametrize("which", ["optik-cnn", "timm-resnet18"])
@pytest.mark.parametrize("targets", [None, [2, 0, 1]])
def test_gradcam_equals_pytorch_grad_cam(which, targets, request):
    model = _cnn() if which == "optik-cnn" else request.getfixturevalue("resnet")
    x = _images(3, model.in_channels, model.input_size[0])
    name, module = default_target_layer(model)
    assert name == ("10" if which == "optik-cnn" else "layer4")
    small = gradcam(model, x, target=targets, layer=name, upsample=False).numpy()
    final, raw = _reference_cam(model, module, x, targets)
    peak = raw.reshape(3, -1).max(1)[:, None, None]
    assert (peak > 0).sum() >= 2  # mostly real maps (a class with no positive evidence has a zero map)
    # At the layer's resolution: the same map, divided by its max.
    np.testing.assert_allclose(small, np.divide(raw, peak, out=np.zeros_like(raw), where=peak > 0), atol=1e-5)
    # Its post-processing (min-max, cv2 resize, min-max) applied to ours gives its output.
    size = (x.shape[3], x.shape[2])
    np.testing.assert_allclose(scale_cam_image(scale_cam_image(small, size)), final, atol=1e-5)


def test_gradcam_upsampling_is_opencv_bilinear_then_max_scaling():
    cv2 = pytest.importorskip("cv2")
    model, x = _cnn(), _images(2, 1, 28)
    small = gradcam(model, x, upsample=False).numpy()
    full = gradcam(model, x).numpy()
    ref = np.stack([cv2.resize(m, (28, 28), interpolation=cv2.INTER_LINEAR) for m in small])
    np.testing.assert_allclose(full, ref / ref.reshape(2, -1).max(1)[:, None, None], atol=1e-6)
    assert full.shape == (2, 28, 28) and full.min() >= 0 and np.allclose(full.reshape(2, -1).max(1), 1)


# ------------------------------------------------------------------------------------------ saliency
def test_saliency_equals_float64_jacobian_and_finite_differences():
    model = _cnn(channels=3, size=16).double().eval()
    x = _images(2, 3, 16).double()
    t = torch.tensor([1, 2])
    ours = saliency(model, x, target=t).double()

    def score(inp):
        return model(inp).gather(1, t[:, None]).sum()

    jac = torch.autograd.functional.jacobian(score, x)  # N x C x H x W
    ref = jac.abs().amax(1)
    torch.testing.assert_close(ours, ref.float().double(), rtol=1e-6, atol=1e-9)
    h, gen = 1e-6, torch.Generator().manual_seed(1)
    for _ in range(6):  # central differences on random pixels of every channel
        n, c, i, j = (int(torch.randint(s, (1,), generator=gen)) for s in x.shape)
        e = torch.zeros_like(x)
        e[n, c, i, j] = h
        with torch.no_grad():
            fd = (model(x + e)[n, t[n]] - model(x - e)[n, t[n]]) / (2 * h)
        assert abs(float(fd) - float(jac[n, c, i, j])) < 1e-6


def test_saliency_float32_matches_float64():
    model, x = _cnn(channels=3, size=16), _images(2, 3, 16)
    ours = saliency(model, x)
    ref = saliency(model.double(), x.double())
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)


def test_smoothgrad_reduces_to_gradient_and_is_seeded():
    model, x = _cnn(), _images(2, 1, 28)
    plain = saliency(model, x)
    torch.testing.assert_close(saliency(model, x, method="smoothgrad", n=1, noise=0.0), plain, rtol=0, atol=0)
    a = saliency(model, x, method="smoothgrad", n=4, noise=0.2, seed=3)
    assert torch.equal(a, saliency(model, x, method="smoothgrad", n=4, noise=0.2, seed=3))
    assert not torch.equal(a, saliency(model, x, method="smoothgrad", n=4, noise=0.2, seed=4))
    assert not torch.allclose(a, plain)


def test_smoothgrad_averages_gradients_at_noise_scaled_to_each_image_range():
    model, x = _cnn(), _images(2, 1, 28) * torch.tensor([1.0, 0.5]).view(2, 1, 1, 1)
    t = torch.tensor([0, 2])
    gen, total = torch.Generator().manual_seed(5), torch.zeros_like(x)
    spread = 0.1 * (x.flatten(1).amax(1) - x.flatten(1).amin(1)).view(2, 1, 1, 1)
    model.eval()
    for _ in range(3):
        noisy = (x + spread * torch.randn(x.shape, generator=gen)).requires_grad_(True)
        model(noisy).gather(1, t[:, None]).sum().backward()
        total += noisy.grad
    model.zero_grad(set_to_none=True)
    ours = saliency(model, x, target=t, method="smoothgrad", n=3, noise=0.1, seed=5)
    torch.testing.assert_close(ours, (total / 3).abs().amax(1), rtol=1e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------ a pinned case
class QuadrantMask(nn.Module):
    """Zeroes everything outside the top-left quadrant of a map."""

    def forward(self, x):
        mask = torch.zeros_like(x)
        mask[..., : x.shape[-2] // 2, : x.shape[-1] // 2] = 1
        return x * mask


def _quadrant_model() -> nn.Module:
    """Logit 0 grows with positive evidence in the top-left quadrant only; logit 1 falls with it."""
    conv = nn.Conv2d(1, 4, 3, padding=1, bias=False)
    fc = nn.Linear(4, 2)
    with torch.no_grad():
        conv.weight.copy_(torch.rand(conv.weight.shape, generator=torch.Generator().manual_seed(0)))
        fc.weight.copy_(torch.tensor([[1.0, 0.5, 2.0, 1.0], [-1.0, -0.5, -2.0, -1.0]]))
        fc.bias.zero_()
    return nn.Sequential(QuadrantMask(), conv, nn.ReLU(), QuadrantMask(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), fc)


def _quadrant_share(maps: torch.Tensor) -> torch.Tensor:
    return maps[:, :8, :8].flatten(1).sum(1) / maps.flatten(1).sum(1)


def test_heatmaps_concentrate_on_the_only_quadrant_the_logit_reads():
    model, x = _quadrant_model(), _images(3, 1, 16)
    assert default_target_layer(model, x)[0] == "3"
    for maps in (gradcam(model, x, target=0), saliency(model, x, target=0),
                 saliency(model, x, target=0, method="smoothgrad", n=8)):
        assert (_quadrant_share(maps) > 0.9).all()
        assert maps.flatten(1).amax(1).gt(0).all()
    # No positive evidence for class 1 anywhere: the map stays zero (not stretched, no NaN).
    assert torch.equal(gradcam(model, x, target=1), torch.zeros(3, 16, 16))


# ------------------------------------------------------------------------------------------ layers
def test_layers_filters_and_feature_maps_against_the_network():
    model, x = _cnn(), _images(2, 1, 28)
    assert [n for n, _ in conv_layers(model)] == ["0", "4", "8"]
    assert torch.equal(first_layer_filters(model), model.net[0].weight.detach())
    assert first_layer_filters(model).shape == (16, 1, 3, 3)
    model.eval()
    with torch.no_grad():
        ref = model.net[:7](model.prepare(x))
    torch.testing.assert_close(feature_maps(model, x, layer="6"), ref, rtol=0, atol=0)
    torch.testing.assert_close(feature_maps(model, x, layer="net.6"), ref, rtol=0, atol=0)
    flat = _cnn(spec="conv(8,k=3,p=1) relu maxpool(2) flatten fc")
    assert default_target_layer(flat)[0] == "2"


def test_default_layer_of_timm_resnet_and_wrong_names(resnet):
    assert default_target_layer(resnet)[0] == "layer4"
    with pytest.raises(ConfigError, match=r"(?s)'layer5'.*Did you mean 'layer4'.*layer4 \(512x2x2\)"):
        gradcam(resnet, _images(1, 3, 64), layer="layer5")
    with pytest.raises(ConfigError, match=r"unknown layer 'conv9'.*valid layers.*8 \(64x7x7\), 9"):
        feature_maps(_cnn(), _images(1, 1, 28), layer="conv9")
    with pytest.raises(ConfigError, match="has no nn.Conv2d"):
        first_layer_filters(_cnn(spec="mlp"))


def test_feature_maps_survive_later_in_place_ops(resnet):
    """timm's BasicBlock adds the shortcut into bn2's output in place: the maps must still be bn2's output."""
    x, block = _images(2, 3, 64), resnet.net.layer4[1]
    kept = []
    handle = block.conv2.register_forward_hook(lambda _m, _i, out: kept.append(out.detach().clone()))
    try:
        ours = feature_maps(resnet, x, layer="layer4.1.bn2")
    finally:
        handle.remove()
    with torch.no_grad():
        ref = block.bn2.eval()(kept[0])
    assert ours.min() < 0  # before the shortcut and the ReLU
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


# ------------------------------------------------------------------------------------------ hygiene
def _state(model):
    return model.training, [p.requires_grad for p in model.parameters()]


def _assert_clean(model, before):
    assert _state(model) == before
    assert all(p.grad is None for p in model.parameters())
    assert all(not m._forward_hooks for m in model.modules())


def test_mode_flags_gradients_and_hooks_are_restored_even_on_errors():
    model, x = _cnn(), _images(2, 1, 28)
    model.train()
    model.net[0].weight.requires_grad_(False)  # a caller's frozen layer stays frozen, the others trainable
    before = _state(model)
    gradcam(model, x)
    saliency(model, x, method="smoothgrad", n=2)
    feature_maps(model, x, layer="4")
    _assert_clean(model, before)
    with pytest.raises(ConfigError, match=r"layer '12' to output a map N x C x h x w, got \(2, 3\)"):
        gradcam(model, x, layer="12")  # the logits layer: fails inside the hooked forward pass
    _assert_clean(model, before)
    with pytest.raises(ConfigError, match=r"target classes in 0..2, got \[5, 5\]"):
        gradcam(model, x, target=5)
    _assert_clean(model, before)
    with pytest.raises(DataError, match=r"in \[0, 1\]"):
        saliency(model, x * 255)
    _assert_clean(model, before)


# ------------------------------------------------------------------------------------------ figures and API
def test_overlay_blends_the_colormap():
    import matplotlib

    img = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    heat = np.linspace(0, 1, 12).reshape(3, 4)
    jet = matplotlib.colormaps["jet"](heat)[..., :3] * 255
    np.testing.assert_array_equal(overlay(img, heat, alpha=0.0), np.repeat(img[..., None], 3, axis=2))
    np.testing.assert_array_equal(overlay(img, heat, alpha=1.0), np.round(jet).astype(np.uint8))
    out = overlay(np.stack([img] * 3, axis=2), heat, alpha=0.25)
    assert out.dtype == np.uint8 and out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out, np.round(0.75 * img[..., None] + 0.25 * jet).astype(np.uint8))
    with pytest.raises(DataError, match="heatmap of the image's size"):
        overlay(img, heat[:2])


@pytest.fixture()
def tiny_run(tmp_path):
    run = tmp_path / "run"
    save_classifier(_cnn(), run)
    rgb = (np.random.default_rng(0).random((32, 30, 3)) * 255).astype(np.uint8)  # resized and greyed to fit
    Image.fromarray(rgb).save(tmp_path / "digit.png")
    return run, tmp_path / "digit.png"


@pytest.mark.parametrize("method", ["gradcam", "saliency", "smoothgrad", "feature-maps", "filters"])
def test_explain_writes_a_png_and_predicts_as_optik_predict(tiny_run, method, tmp_path, monkeypatch):
    run, image = tiny_run
    monkeypatch.chdir(tmp_path)
    result = explain(run, image, method=method)
    assert result["out"] == str(tmp_path / f"digit-{method}.png")
    assert open(result["out"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert result["prediction"] == optik.predict(run, [image], top_k=3)[0]["top_k"]
    assert result["method"] == method
    assert result["layer"] == {"gradcam": "10", "feature-maps": "10", "filters": "0"}.get(method)
    if method in ("gradcam", "saliency", "smoothgrad"):
        assert result["target"] == result["prediction"][0]["class"]


def test_explain_options_and_errors(tiny_run, tmp_path):
    run, image = tiny_run
    model = optik.load(run)
    out = explain(model, image, method="gradcam", target="two", layer="6", out=tmp_path / "a" / "cam.png")
    assert (out["target"], out["layer"], out["out"]) == ("two", "6", str(tmp_path / "a" / "cam.png"))
    filters = explain(run, method="filters", out=tmp_path / "f.png")
    assert filters["prediction"] is None and (tmp_path / "f.png").is_file()
    with pytest.raises(DataError, match="does not exist"):
        explain(model, tmp_path / "missing.png")
    (tmp_path / "bad.png").write_bytes(b"not an image at all")
    with pytest.raises(DataError, match="bad.png: not a readable image"):
        explain(model, tmp_path / "bad.png")
    with pytest.raises(ConfigError, match="expected method one of gradcam, saliency"):
        explain(model, image, method="lime")
    with pytest.raises(ConfigError, match="class name or index 0..2, got 'seven'; classes: zero, one, two"):
        explain(model, image, target="seven")
    with pytest.raises(ConfigError, match="Did you mean '10'"):
        explain(model, image, layer="100", out=tmp_path / "x.png")


def test_report_figures():
    model = _cnn()
    images = (_images(10, 1, 28) * 255).to(torch.uint8)
    labels = torch.tensor([2, 2, 0, 1, 0, 1, 2, 0, 1, 2])
    fig = explain_examples(model, images, labels, n=4)
    assert len(fig.axes) == 8
    assert [ax.get_title() for ax in fig.axes[::2]] == ["true zero", "true one", "true two", "true two"]
    fig = filters_figure(model)
    assert sum(bool(ax.get_images()) for ax in fig.axes) == 16
