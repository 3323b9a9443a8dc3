"""Transfer helpers: weights from a run folder with another head, a frozen backbone (BatchNorm too)."""
import pytest
import torch
from safetensors.torch import load_file

import optik
from optik.core.errors import CheckpointError
from optik.models import create_classifier
from optik.models.transfer import head_parameter_names, load_backbone_weights, parameter_groups


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("transfer") / "digits"
    optik.train(data="digits", model="cnn-small", epochs=2, out=out, progress=False)
    return out


def test_weights_from_a_run_folder_drop_the_head_of_another_size(digits_run):
    source = load_file(str(digits_run / "model.safetensors"))
    model = create_classifier("cnn-small", classes=["a", "b"], in_channels=1, input_size=(25, 25))
    result = load_backbone_weights(model, digits_run)
    assert result["dropped"] and all(k in head_parameter_names(model.net) for k in result["dropped"])
    for k, v in model.net.state_dict().items():
        if k not in result["dropped"]:
            assert torch.equal(v, source["net." + k]), k
    other = create_classifier("lenet5", classes=["a", "b"], in_channels=1, input_size=(25, 25))
    with pytest.raises(CheckpointError, match="do not fit this architecture"):
        load_backbone_weights(other, digits_run)


def test_frozen_backbone_keeps_weights_and_batchnorm_statistics(digits_run, tmp_path):
    result = optik.train(data="faces", model="cnn-small", epochs=2, weights=str(digits_run), freeze="backbone",
                         out=tmp_path / "faces", progress=False)
    source = load_file(str(digits_run / "model.safetensors"))
    trained = load_file(str(tmp_path / "faces" / "model.safetensors"))
    head = {"net." + k for k in head_parameter_names(result.model.net)}
    for k, v in trained.items():
        if k.startswith("net.") and k not in head and k in source:  # running_mean / running_var included
            assert torch.equal(v, source[k]), f"{k} changed although the backbone is frozen"
    assert any(not torch.equal(trained[k], torch.zeros_like(trained[k])) for k in head)
    assert any("running_mean" in k for k in trained)


def test_discriminative_learning_rates():
    model = create_classifier("cnn-small", classes=["a", "b"], in_channels=1, input_size=(16, 16))
    groups = parameter_groups(model, lr=0.1, backbone_lr_scale=0.1, weight_decay=5e-4)
    head = {id(p) for p in model.net[-1].parameters()}
    for g in groups:
        in_head = [id(p) in head for p in g["params"]]
        assert all(in_head) or not any(in_head)
        assert g["lr"] == (0.1 if all(in_head) else pytest.approx(0.01))
        assert g["weight_decay"] == (5e-4 if all(p.ndim > 1 for p in g["params"]) else 0.0)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


def test_a_pickle_weights_file_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must not run",))

    torch.save({"state_dict": {"w": Payload()}}, tmp_path / "evil.pth")
    model = create_classifier("cnn-small", classes=["a", "b"], in_channels=1, input_size=(16, 16))
    with pytest.raises(CheckpointError, match="refusing to load"):
        load_backbone_weights(model, tmp_path / "evil.pth")
