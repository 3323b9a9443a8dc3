"""The same work on a CUDA device: skipped, with a message saying so, where torch sees no GPU (conftest.py).

CPU machines cannot show what only a GPU refuses (a CPU generator for a CUDA tensor, a tensor left on the host);
these run the paths that did: adversarial training, every attack, augmentation and the generative trainings.
"""
import pytest
import torch

import optik
from optik.augment.generator import AugmentConfig, augment
from optik.core.seed import generator
from optik.robustness import ATTACKS, make_attack

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cuda_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "run"
    optik.train(data="mnist5k", model="cnn-small", epochs=1, accelerator="gpu", out=out, progress=False)
    return out


@pytest.mark.parametrize("method", ["pgd", "fgsm-rs", "trades"])
def test_adversarial_training_runs_on_cuda(method, tmp_path):
    result = optik.train(data="mnist5k", model="cnn-small", epochs=1, accelerator="gpu", adversarial=method,
                         eps=0.3, attack_steps=2, out=tmp_path / method, progress=False)
    assert result.metrics["accuracy"] > 0.5


@pytest.mark.parametrize("method", ATTACKS.names())
def test_every_attack_runs_on_cuda_and_keeps_the_contract(cuda_run, method):
    model = optik.load(cuda_run, device="cuda")
    from optik.runs import Run

    test = Run.open(cuda_run).split("test")
    x, y = (test.take(range(64)).float() / 255).cuda(), test.labels[:64].cuda()
    spec = ATTACKS.spec(method)
    eps = None if spec.minimal else {"l2": 3.0, "linf": 0.3}[spec.norm]
    kw = {"steps": 5} if spec.iterative else {}
    result = make_attack(method, model, eps=eps, **kw)(x, y)
    assert result.adv.is_cuda and result.adv.min() >= 0 and result.adv.max() <= 1
    assert result.success.float().mean() > 0.5


def test_augmentation_on_cuda_equals_the_cpu():
    cfg = AugmentConfig(rotation_range=30, width_shift_range=0.2, height_shift_range=2, shear_range=10,
                        zoom_range=0.2, horizontal_flip=True, brightness_range=(0.8, 1.2), fill_mode="reflect")
    x = torch.rand(32, 3, 40, 40)
    cpu, params = augment(x, cfg, generator=generator(0, "gpu"))
    gpu, params_gpu = augment(x.cuda(), cfg, generator=generator(0, "gpu"))
    assert all(torch.equal(params[k], params_gpu[k]) for k in params)
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["gan", "vae"])
def test_generative_training_runs_on_cuda(kind, tmp_path):
    from optik import generative_api as gen

    train = gen.train_gan if kind == "gan" else gen.train_vae
    result = train(data="mnist5k", epochs=1, accelerator="gpu", out=tmp_path / kind, progress=False)
    assert result.run_dir.is_dir()
