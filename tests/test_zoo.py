"""The Keras-named zoo over timm: every entry builds, runs forward and backward, and takes a new head."""
import pytest
import torch

from optik.core.errors import ConfigError
from optik.models import MODELS, create_classifier
from optik.models.transfer import backbone_stages, head_module, set_trainable
from optik.models.zoo import ZOO

timm = pytest.importorskip("timm")


@pytest.mark.parametrize("entry", ZOO, ids=lambda e: e.keras)
def test_zoo_entry_builds_trains_and_takes_a_new_head(entry):
    """Grayscale 48 x 48 data into each zoo model, resized to 96 x 96 (kept small: the native sizes cost
    seconds per model on 2 cores), forward and backward; stages for fine-tuning; a new head."""
    torch.manual_seed(0)
    model = create_classifier(entry.keras.lower(), classes=list("abc"), in_channels=1, input_size=(48, 48),
                              net_input_size=96)
    assert model.arch == {"name": entry.keras, "timm": entry.timm}
    assert (model.net_channels, model.net_input_size) == (3, (96, 96))
    net = model.net
    assert net.default_cfg["architecture"] == entry.timm or entry.timm.startswith(net.default_cfg["architecture"])
    assert model.mean.flatten().tolist() == pytest.approx(list(net.pretrained_cfg["mean"]))
    x = torch.rand(2, 1, 48, 48)
    out = model(x)
    assert out.shape == (2, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    stages = backbone_stages(net)
    assert len(stages) >= 3
    set_trainable(model, 1)  # the last stage and the head train; the stem does not
    assert all(p.requires_grad for p in stages[-1]) and not any(p.requires_grad for p in stages[0])
    assert all(p.requires_grad for p in head_module(net).parameters())
    width = net.num_features
    net.reset_classifier(7)  # transfer: a new head through timm's interface, never a hard-coded width
    assert net.num_features == width and net(model.prepare(x)).shape == (2, 7)


def test_names_are_case_insensitive_and_any_timm_name_works():
    assert MODELS.get("resnet50v2").name == "ResNet50V2"
    m = create_classifier("mnasnet_100", classes=["a", "b"], in_channels=1, input_size=(64, 64))
    assert m.arch == {"name": "timm", "timm": "mnasnet_100"} and m(torch.rand(1, 1, 64, 64)).shape == (1, 2)
    assert m.net_input_size == (224, 224)  # the native size by default


def test_nasnet_mobile_names_its_substitute():
    with pytest.raises(ConfigError, match="NASNetMobile has no timm architecture.*mnasnet_100"):
        create_classifier("NASNetMobile", classes=["a", "b"], in_channels=3, input_size=(96, 96))


def test_zoo_table_parameters_match_keras_up_to_counting_conventions():
    """Measured counts lie within 2.5 % of the Keras table; the gap is BatchNorm statistics, which Keras counts
    as (non-trainable) parameters and PyTorch keeps as buffers -- never a different architecture."""
    from optik.models.zoo import zoo_table

    rows = zoo_table()
    assert len(rows) == len(ZOO) + 1  # plus NASNetMobile, with its substitute
    for r in rows:
        if r["timm"] is None:
            assert "mnasnet_100" in r["note"]
            continue
        assert abs(r["params_m"] - r["keras_params_m"]) / r["keras_params_m"] < 0.025, r
    assert {r["keras"] for r in rows} >= {"Xception", "VGG16", "ResNet152V2", "InceptionResNetV2", "MobileNet",
                                          "DenseNet201", "NASNetLarge", "EfficientNetB7"}
    # the weights column is what --pretrained loads (timm's default tag, not the first alphabetically), and its
    # top-1 is that tag's row of timm's results-imagenet.csv
    by_name = {r["keras"]: r for r in rows}
    b0, v3 = by_name["EfficientNetB0"], by_name["InceptionV3"]
    assert b0["weights"] == "tf_efficientnet_b0.ns_jft_in1k" and b0["pretrained"][0] == "ns_jft_in1k"
    assert (b0["weights_top1"], b0["weights_eval_size"]) == (78.67, 224)
    assert v3["weights"] == "inception_v3.tv_in1k" and v3["weights_top1"] == 77.434
    for r in rows:
        if r["weights"]:
            assert r["weights"] == f"{r['timm']}.{timm.get_pretrained_cfg(r['timm']).tag}", r
