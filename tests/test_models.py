"""CNN spec builder, registry, Classifier contract, safe save/load."""
import json

import pytest
import torch
from torch import nn

from optik.core.errors import CheckpointError, ConfigError, DataError, RunError
from optik.models import MODELS, build_cnn, create_classifier, list_models, load_classifier, save_classifier


def test_spec_layers_map_to_modules():
    net = build_cnn("conv(8,k=5,s=2,p=2,d=1) bn relu maxpool(2) conv(16,k=3,d=2,p=same) avgpool(2,s=1) "
                    "dropout(0.25) flatten fc(32) leakyrelu(0.1) fc", in_channels=3, input_size=(32, 32),
                    num_classes=7)
    conv1, conv2 = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert (conv1.kernel_size, conv1.stride, conv1.padding, conv1.dilation) == ((5, 5), (2, 2), (2, 2), (1, 1))
    assert conv1.bias is None  # followed by BatchNorm
    assert (conv2.dilation, conv2.padding) == ((2, 2), (2, 2))
    # 32 -> conv s2 -> 16 -> pool -> 8 -> conv same -> 8 -> avgpool(2, s=1) -> 7: 16*7*7 features
    fc1 = [m for m in net.modules() if isinstance(m, nn.Linear)][0]
    assert fc1.in_features == 16 * 7 * 7
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 7)
    assert any(isinstance(m, nn.Dropout) and m.p == 0.25 for m in net.modules())


def test_output_size_matches_formula_against_torch():
    for k, s, p, d in [(3, 1, 0, 1), (3, 2, 1, 1), (5, 1, 2, 2), (7, 3, 3, 1)]:
        net = build_cnn(f"conv(4,k={k},s={s},p={p},d={d})", in_channels=1, input_size=(29, 29), num_classes=3)
        ref = nn.Conv2d(1, 4, k, s, p, d)(torch.rand(1, 1, 29, 29))
        flat = [m for m in net.modules() if isinstance(m, nn.Linear)][0].in_features
        assert flat == ref[0].numel()


@pytest.mark.parametrize("spec,match", [
    ("conv(8) softmax", "leave out 'softmax'"),
    ("conv(8,k=3) pool(2)", "unknown layer 'pool'"),
    ("conv(k=3)", "output channels"),
    ("conv(8,q=3)", "takes out, k, s, p, d"),
    ("fc(10) conv(8)", "image layers must come first"),
    ("conv(8,k=3) maxpool(2) maxpool(2) maxpool(2) maxpool(2)", "shrinks the feature map"),
    ("dropout(1.5)", r"\[0, 1\)"),
])
def test_bad_specs_say_what_is_wrong(spec, match):
    with pytest.raises(ConfigError, match=match):
        build_cnn(spec, in_channels=1, input_size=(8, 8), num_classes=2)


def test_registry_lists_and_suggests():
    names = {m["name"] for m in list_models()}
    assert {"cnn", "cnn-small", "lenet5", "mlp"} <= names
    with pytest.raises(ConfigError, match="Did you mean 'lenet5'"):
        MODELS.get("lenet")
    with pytest.raises(ValueError, match="already registered"):
        MODELS.add("CNN", lambda **kw: None)


@pytest.mark.parametrize("name", sorted(e.name for e in MODELS.entries() if e.meta.get("family") != "zoo"))
def test_every_registered_model_trains_one_step(name):  # the zoo has its own smoke test (test_zoo.py)
    torch.manual_seed(0)
    m = create_classifier(name, classes=list("abc"), in_channels=1, input_size=(28, 28))
    x = torch.rand(4, 1, 28, 28)
    loss = nn.functional.cross_entropy(m(x), torch.tensor([0, 1, 2, 0]))
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())


def test_classifier_normalizes_inside():
    m = create_classifier("mlp", classes=["a", "b"], in_channels=1, input_size=(4, 4), mean=[0.2], std=[0.5]).eval()
    x = torch.rand(3, 1, 4, 4)
    assert torch.allclose(m(x), m.net((x - 0.2) / 0.5))


def test_classifier_names_what_it_expected_for_wrong_input():
    m = create_classifier("cnn-small", classes=list("ab"), in_channels=1, input_size=(16, 16)).eval()
    x = torch.rand(2, 1, 16, 16)
    with pytest.raises(DataError, match=r"N x 1 x H x W.*got shape \(1, 16, 16\); add the batch dimension"):
        m(x[0])
    with pytest.raises(DataError, match=r"got shape \(2, 16, 16, 1\).*channels last\? use x.permute\(0, 3, 1, 2\)"):
        m(x.permute(0, 2, 3, 1))
    with pytest.raises(DataError, match="got dtype uint8: divide 0-255 pixels by 255"):
        m((x * 255).to(torch.uint8))
    with pytest.raises(DataError, match="got shape \\(2, 3, 16, 16\\): 3 channels"):
        m(x.expand(-1, 3, -1, -1))
    torch.testing.assert_close(m(x.double()), m(x))  # float64 pixels are converted, not an error


def test_save_load_roundtrip_and_mismatch(tmp_path):
    m = create_classifier("cnn-small", classes=list("abc"), in_channels=1, input_size=(16, 16), mean=[0.1], std=[0.3])
    save_classifier(m, tmp_path / "run")
    back = load_classifier(tmp_path / "run")
    x = torch.rand(2, 1, 16, 16)
    assert torch.equal(m.eval()(x), back(x)) and back.classes == list("abc")
    meta = json.loads((tmp_path / "run" / "model.json").read_text())
    assert meta["mean"] == pytest.approx([0.1]) and meta["arch"]["name"] == "cnn-small"

    other = create_classifier("cnn-small", classes=list("ab"), in_channels=1, input_size=(16, 16))
    save_classifier(other, tmp_path / "two")
    (tmp_path / "two" / "model.json").write_text(json.dumps(meta))  # description says 3 classes, weights have 2
    with pytest.raises(CheckpointError, match=r"net\..*weight: expected \(3, 64\), got \(2, 64\)"):
        load_classifier(tmp_path / "two")
    meta["arch"] = {"name": "lenet5", "spec": MODELS.get("lenet5").meta["spec"]}
    (tmp_path / "two" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="another architecture"):
        load_classifier(tmp_path / "two")
    with pytest.raises(RunError, match="does not exist"):
        load_classifier(tmp_path / "missing")
    (tmp_path / "two" / "model.safetensors").write_bytes(b"\x80\x04pickle")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_classifier(tmp_path / "two")
