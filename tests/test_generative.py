"""GANs and VAEs: losses against closed forms and torch.distributions, the building blocks' invariants, and the
commands end to end (train, resume, keep-best, sample, interpolate, quality) on real mnist5k digits."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

import optik
from optik import generative_api as gen
from optik.core.errors import ConfigError, RunError
from optik.core.seed import generator
from optik.generative.diffaug import diff_augment
from optik.training.ema import EMA, ema_beta
from optik.generative.latent import lerp, slerp
from optik.generative.losses import (discriminator_loss, generator_loss, kl_normal, r1_penalty,
                                     reconstruction_nll)
from optik.generative.models import VAEModel
from optik.generative.nets import VAE, Discriminator, Generator, upsampling_stages

from helpers import run_optik


# ------------------------------------------------------------------------------------------------ networks
@pytest.mark.parametrize("size,stages,base", [((28, 28), 2, (7, 7)), ((32, 32), 3, (4, 4)), ((64, 48), 3, (8, 6))])
def test_networks_are_sized_from_the_image(size, stages, base):
    assert upsampling_stages(size) == (stages, base)
    for c in (1, 3):
        g = Generator(latent_dim=8, channels=c, image_size=size, width=4, num_classes=3)
        x = g(torch.randn(5, 8), torch.tensor([0, 1, 2, 0, 1]))
        assert x.shape == (5, c, *size) and x.min() >= 0 and x.max() <= 1
        for norm in ("bn", "sn", "none"):
            d = Discriminator(channels=c, image_size=size, width=4, norm=norm, num_classes=3)
            assert d(x, torch.tensor([0, 1, 2, 0, 1])).shape == (5,)
        v = VAE(latent_dim=6, channels=c, image_size=size, width=4, hidden=16)
        mu, logvar = v.encode(x)
        assert mu.shape == logvar.shape == (5, 6) and v.decode(mu).shape == (5, c, *size)


def test_odd_image_sizes_are_refused_with_a_fix():
    with pytest.raises(ConfigError, match="--image-size"):
        upsampling_stages((27, 27))


def test_projection_discriminator_uses_the_label():
    d = Discriminator(channels=1, image_size=(28, 28), width=4, norm="none", num_classes=10)
    x = torch.rand(2, 1, 28, 28)
    assert not torch.allclose(d(x, torch.tensor([0, 0])), d(x, torch.tensor([3, 3])))


# ------------------------------------------------------------------------------------------------ losses
def test_gan_losses_match_their_definitions():
    r, f = torch.randn(50), torch.randn(50)
    sig = torch.sigmoid
    # The lecture's objective: D maximizes log D(x) + log(1 - D(G(z))); G minimizes log(1 - D(G(z))).
    d_ref = -(torch.log(sig(r)) + torch.log(1 - sig(f))).mean()
    for kind in ("minimax", "nonsaturating"):
        torch.testing.assert_close(discriminator_loss(kind, r, f), d_ref)
    torch.testing.assert_close(generator_loss("minimax", f), torch.log(1 - sig(f)).mean())
    torch.testing.assert_close(generator_loss("nonsaturating", f), -torch.log(sig(f)).mean())
    torch.testing.assert_close(discriminator_loss("hinge", r, f),
                               torch.clamp(1 - r, min=0).mean() + torch.clamp(1 + f, min=0).mean())
    torch.testing.assert_close(generator_loss("hinge", f), -f.mean())
    with pytest.raises(ValueError, match="minimax"):
        generator_loss("wasserstein", f)


def test_minimax_generator_saturates_where_nonsaturating_does_not():
    f = torch.tensor([-8.0], requires_grad=True)  # the discriminator is sure this fake is fake
    (g_mm,) = torch.autograd.grad(generator_loss("minimax", f), f)
    (g_ns,) = torch.autograd.grad(generator_loss("nonsaturating", f), f)
    assert abs(g_mm.item()) < 1e-3 < 0.99 < abs(g_ns.item())


def test_r1_penalty_of_a_linear_discriminator_is_the_squared_weight_norm():
    w = torch.randn(1, 3, 4, 4)
    x = torch.rand(6, 3, 4, 4, requires_grad=True)
    logits = (x * w).flatten(1).sum(1) + 0.3
    torch.testing.assert_close(r1_penalty(logits, x), w.square().sum())


def test_elbo_terms_match_torch_distributions():
    mu, logvar = torch.randn(7, 5), torch.randn(7, 5)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(5), torch.ones(5))
    torch.testing.assert_close(kl_normal(mu, logvar), torch.distributions.kl_divergence(q, p).sum(1))
    logits = torch.randn(7, 1, 4, 4)
    x = torch.randint(0, 2, (7, 1, 4, 4)).float()
    ref = -torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    torch.testing.assert_close(reconstruction_nll("bernoulli", logits, x), ref)
    xg = torch.rand(7, 1, 4, 4)
    ref = -torch.distributions.Normal(torch.sigmoid(logits), 0.2).log_prob(xg).flatten(1).sum(1)
    torch.testing.assert_close(reconstruction_nll("gaussian", logits, xg, log_sigma=math.log(0.2)), ref)


# ------------------------------------------------------------------------------------------------ parts
def test_ema_half_life_and_rampup():
    beta = ema_beta(batch_size=64, half_life_images=6400, images_seen=10**9, rampup=0.05)
    assert beta ** 100 == pytest.approx(0.5)  # 100 steps of 64 images = one half-life
    early = ema_beta(batch_size=64, half_life_images=6400, images_seen=1280, rampup=0.05)  # half-life 64 images
    assert early == pytest.approx(0.5)
    net = torch.nn.Linear(3, 2)
    ema = EMA(net)
    before = ema.average.weight.clone()
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net, 0.25)
    torch.testing.assert_close(ema.average.weight, 0.25 * before + 0.75 * net.weight)
    assert not any(p.requires_grad for p in ema.average.parameters())


def test_diffaugment_translation_and_cutout_are_exact_and_differentiable():
    x = torch.rand(16, 2, 8, 8, requires_grad=True)
    g = torch.Generator().manual_seed(0)
    t = diff_augment(x, ["translation"], generator=g)
    shifted = 0
    for i in range(16):  # every output is the input shifted by whole pixels (|shift| <= 1), zeros coming in
        matches = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                   if torch.equal(t[i], _shift(x[i].detach(), dy, dx))]
        assert matches, i
        shifted += matches[0] != (0, 0)
    assert shifted > 4
    c = diff_augment(x, ["cutout"], generator=torch.Generator().manual_seed(1))
    zeroed = (c == 0) & (x != 0)
    assert zeroed[:, 0].flatten(1).sum(1).max() <= 16 and (c[~zeroed] == x[~zeroed]).all()
    (grad,) = torch.autograd.grad(diff_augment(x, ["color", "translation", "cutout"]).sum(), x)
    assert grad.abs().sum() > 0
    a = diff_augment(x, ["color", "translation", "cutout"], generator=torch.Generator().manual_seed(3))
    b = diff_augment(x, ["color", "translation", "cutout"], generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def _shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    out[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        img[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def test_slerp_follows_the_great_circle_and_lerp_the_line():
    a, b = torch.randn(4, 16, dtype=torch.float64), torch.randn(4, 16, dtype=torch.float64)  # acos near 1 needs it
    t = torch.linspace(0, 1, 7, dtype=torch.float64)
    s, ln = slerp(a, b, t), lerp(a, b, t)
    torch.testing.assert_close(s[:, 0], a)
    torch.testing.assert_close(s[:, -1], b)
    torch.testing.assert_close(ln[:, 3], (a + b) / 2)
    norms = a.norm(dim=1, keepdim=True) * (1 - t) + b.norm(dim=1, keepdim=True) * t
    torch.testing.assert_close(s.norm(dim=2), norms)
    ua, ub = F.normalize(a, dim=1), F.normalize(b, dim=1)  # the angle to a grows linearly in t
    angle = torch.acos((ua * ub).sum(1))
    got = torch.acos((F.normalize(s, dim=2) * ua.unsqueeze(1)).sum(2).clamp(-1, 1))
    torch.testing.assert_close(got, angle.unsqueeze(1) * t, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(slerp(a, a, t)[:, 2], a)  # parallel codes: no division by sin(0)


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def feature_run(tmp_path_factory):
    """A small optik CNN on mnist5k: the feature extractor of FID in these tests (the default would train the
    full default CNN once and cache it)."""
    out = tmp_path_factory.mktemp("features") / "cnn"
    optik.train(data="mnist5k", model="cnn-small", epochs=2, batch_size=128, out=out, progress=False)
    return out


FAST_GAN = ["--data", "mnist5k", "--width", "8", "--latent-dim", "16", "--batch-size", "128", "--no-progress",
            "--quality-samples", "200", "--quality-every", "1"]


@pytest.fixture(scope="module")
def gan_run(tmp_path_factory, feature_run):
    out = tmp_path_factory.mktemp("gan") / "run"
    run_optik("gan", "train", *FAST_GAN, "--epochs", "3", "--features", feature_run, "--out", out)
    return out


def test_gan_run_folder_holds_model_metrics_figures_and_tensorboard(gan_run, feature_run):
    names = {p.relative_to(gan_run).as_posix() for p in gan_run.rglob("*") if p.is_file()}
    for need in ("config.yaml", "model.json", "model.safetensors", "metrics.json", "checkpoints/last.ckpt",
                 "checkpoints/best.ckpt", "figures/samples.png", "figures/interpolation.png"):
        assert need in names, need
    assert sorted(n for n in names if n.endswith(".ckpt")) == ["checkpoints/best.ckpt", "checkpoints/last.ckpt"]
    m = json.loads((gan_run / "metrics.json").read_text())
    q = m["test"]
    assert q["n_real"] == q["n_fake"] == m["n_test"] == 1000 and q["feature_dim"] == 64
    assert q["fid"] > m["fid_floor_train_vs_test"] >= 0 and 0 <= q["precision"] <= 1 and 0 <= q["recall"] <= 1
    assert sum(q["class_histogram"]["counts"].values()) == 1000
    assert [h["epoch"] for h in m["quality_history"]] == [0, 1, 2]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(gan_run / "tensorboard")).Reload()
    assert "samples" in acc.Tags()["images"] and len(acc.Images("samples")) == 3
    assert {"quality/fid", "train/d_loss", "train/g_loss"} <= set(acc.Tags()["scalars"])


def test_keep_best_saves_the_epoch_of_lowest_fid(gan_run):
    m = json.loads((gan_run / "metrics.json").read_text())
    history = [h["fid"] for h in m["quality_history"]]
    best = torch.load(gan_run / "checkpoints" / "best.ckpt", weights_only=True)
    assert best["epoch"] == int(np.argmin(history))
    saved = load_file(gan_run / "model.safetensors")
    ema = {k.removeprefix("ema.average."): v for k, v in best["state_dict"].items() if k.startswith("ema.average.")}
    assert saved.keys() == {f"generator.{k}" for k in ema}
    for k, v in ema.items():
        assert torch.equal(saved[f"generator.{k}"], v), k


def test_sample_writes_uint8_npz_and_png_and_is_seeded(gan_run, tmp_path):
    run_optik("sample", gan_run, "--n", "10", "--out", tmp_path / "s.npz", "--seed", "3")
    arrays = np.load(tmp_path / "s.npz")
    assert arrays["images"].dtype == np.uint8 and arrays["images"].shape == (10, 1, 28, 28)
    again = gen.sample(gan_run, n=10, seed=3)
    assert np.array_equal((again * 255).round().to(torch.uint8).numpy(), arrays["images"])
    assert not torch.equal(again, gen.sample(gan_run, n=10, seed=4))
    run_optik("sample", gan_run, "--n", "16", "--out", tmp_path / "grid.png")
    run_optik("interpolate", gan_run, "--out", tmp_path / "i.png", "--method", "lerp", "--rows", "3")
    from PIL import Image

    assert Image.open(tmp_path / "grid.png").size[0] > 50 and Image.open(tmp_path / "i.png").size[0] > 100
    bad = run_optik("sample", gan_run, "--out", tmp_path / "s.jpg", check=False)
    assert bad.returncode == 2 and ".png" in bad.stderr and ".npz" in bad.stderr
    bad = run_optik("sample", gan_run, "--labels", "1,2", check=False)
    assert bad.returncode == 2 and "not class-conditional" in bad.stderr


def test_quality_command_reproduces_the_training_report(gan_run):
    out = run_optik("quality", gan_run, "--json")
    report = json.loads(out.stdout)
    m = json.loads((gan_run / "metrics.json").read_text())["test"]
    assert report["fid"] == pytest.approx(m["fid"], rel=1e-9)
    assert report["class_histogram"]["counts"] == m["class_histogram"]["counts"]


def test_gan_resume_after_interruption_equals_uninterrupted(tmp_path, feature_run):
    """Stop after 1 of 2 epochs (as a kill would leave it: last.ckpt of epoch 0), resume, compare weights."""
    args = [*FAST_GAN, "--classes", "0,1", "--features", feature_run, "--seed", "4", "--diffaugment",
            "translation,cutout", "--keep", "last"]
    run_optik("gan", "train", *args, "--epochs", "2", "--out", tmp_path / "whole")
    run_optik("gan", "train", *args, "--epochs", "1", "--out", tmp_path / "cut")
    import yaml

    cfg = yaml.safe_load((tmp_path / "cut" / "config.yaml").read_text())
    cfg["config"]["epochs"] = 2  # the interrupted run was meant to do 2 epochs
    (tmp_path / "cut" / "config.yaml").write_text(yaml.safe_dump(cfg))
    for f in ("model.safetensors", "model.json", "metrics.json"):
        (tmp_path / "cut" / f).unlink()
    run_optik("gan", "train", "--resume", tmp_path / "cut", "--no-progress")
    a, b = load_file(tmp_path / "whole" / "model.safetensors"), load_file(tmp_path / "cut" / "model.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ha = json.loads((tmp_path / "whole" / "metrics.json").read_text())["quality_history"]
    hb = json.loads((tmp_path / "cut" / "metrics.json").read_text())["quality_history"]
    assert ha == hb


def test_conditional_gan_with_r1_and_hinge_trains_and_samples_requested_classes(tmp_path, feature_run):
    out = tmp_path / "cgan"
    r = gen.train_gan(data="mnist5k", classes="3,7", width=8, latent_dim=16, batch_size=128, epochs=1,
                      conditional=True, loss="hinge", d_norm="none", r1_gamma=1.0, ema_half_life=0,
                      features=str(feature_run), quality_every=0, keep="last", out=out, progress=False)
    assert r.model.conditional and r.model.classes == ["3", "7"]
    x = gen.sample(out, n=4, labels=[1, 1, 0, 0])
    assert x.shape == (4, 1, 28, 28)
    assert "class_histogram" not in r.metrics["test"]  # the feature classifier knows 10 classes, the data 2
    with pytest.raises(ConfigError, match="labels"):
        gen.sample(out, n=2, labels=[0, 5])


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, feature_run):
    out = tmp_path_factory.mktemp("vae") / "run"
    return gen.train_vae(data="mnist5k", width=8, hidden=64, batch_size=128, epochs=3, kl_warmup=20,
                         features=str(feature_run), quality_samples=200, out=out, progress=False)


def test_vae_reports_test_elbo_that_matches_a_direct_computation(vae_run):
    m = vae_run.metrics
    e = m["test_neg_elbo"]
    assert e["neg_elbo"] == pytest.approx(e["nll"] + e["kl"]) and e["kl"] > 0
    assert 60 < e["neg_elbo"] < 400  # nats per 28x28 digit: far below the 543 of an untrained decoder
    ds = optik.load_dataset("mnist5k")
    from optik.data import split_dataset

    test = ds.images[split_dataset(ds, val_fraction=0.1, test_fraction=0.2, seed=0)["test"]].float() / 255
    vae = vae_run.model.vae
    assert vae.prior is not None and len(vae.prior.logits) == 50  # the default: a learned mixture prior
    D = torch.distributions
    prior = D.MixtureSameFamily(D.Categorical(logits=vae.prior.logits),
                                D.Independent(D.Normal(vae.prior.means, (0.5 * vae.prior.logvars).exp()), 1))
    with torch.no_grad():  # an independent Monte Carlo estimate: 8 posterior samples per image, torch.distributions
        mu, logvar = vae.encode(test)
        q = D.Independent(D.Normal(mu, (0.5 * logvar).exp()), 1)
        g = torch.Generator().manual_seed(123)
        nll, kl = [], []
        for _ in range(8):
            z = mu + torch.randn(mu.shape, generator=g) * (0.5 * logvar).exp()
            nll.append(F.binary_cross_entropy_with_logits(vae.decode(z), test, reduction="none").flatten(1).sum(1))
            kl.append(q.log_prob(z) - prior.log_prob(z))
    # One sample per image (the report) vs eight (here): Monte Carlo noise only.
    assert torch.stack(kl).mean().item() == pytest.approx(e["kl"], rel=0.02)
    assert torch.stack(nll).mean().item() == pytest.approx(e["nll"], rel=0.01)
    for f in ("samples.png", "interpolation.png", "reconstructions.png"):
        assert (vae_run.run_dir / "figures" / f).is_file()


def test_vae_validates_every_val_every_epochs_and_at_the_last(vae_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    # 3 epochs with the default val_every=5: validation only at the last epoch; at most one per epoch otherwise.
    acc = EventAccumulator(str(vae_run.run_dir / "tensorboard")).Reload()
    assert len(acc.Scalars("val/neg_elbo")) == 1
    assert len(acc.Images("samples")) == 3  # sample grids still every epoch
    with pytest.raises(ConfigError, match="val_every"):
        gen.make_generative_config("vae", val_every=0)
    assert gen.make_generative_config("vae").quality_every == 10


def test_vae_interpolates_between_encoded_test_images(vae_run, tmp_path):
    out = gen.interpolate(vae_run.run_dir, out=tmp_path / "v.png", rows=2, steps=5)
    assert out.is_file()
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(vae_run.model.reconstruct(x), torch.sigmoid(vae_run.model.vae.decode(
        vae_run.model.vae.encode(x)[0])))


def test_bad_generative_input_gets_clear_errors(tmp_path, gan_run, small_classifier_run=None):
    bad = run_optik("gan", "train", "--loss", "wasserstein", "--out", tmp_path / "x", check=False)
    assert bad.returncode == 2 and "nonsaturating" in bad.stderr and "wasserstein" in bad.stderr
    bad = run_optik("vae", "train", "--likelihood", "poisson", "--out", tmp_path / "x", check=False)
    assert bad.returncode == 2 and "bernoulli" in bad.stderr
    bad = run_optik("gan", "train", "--diffaugment", "rotate", "--out", tmp_path / "x", check=False)
    assert bad.returncode == 2 and "translation" in bad.stderr
    with pytest.raises(ConfigError, match="keep"):
        gen.make_generative_config("gan", quality_every=0, keep="best")
    with pytest.raises(ConfigError, match="cannot resume"):
        gen.train_vae(resume=gan_run, progress=False)
    with pytest.raises(ConfigError, match="cannot change"):
        gen.train_gan(resume=gan_run, lr=0.1, progress=False)
    with pytest.raises(RunError, match="does not exist"):
        gen.sample(tmp_path / "missing")
    bad = run_optik("gan", "train", "--features", f"inception:{tmp_path / 'nope.pth'}", "--out", tmp_path / "y",
                    check=False)
    assert bad.returncode == 2 and "inception_v3_google" in bad.stderr
    with pytest.raises(ConfigError, match="rows >= 1"):
        gen.interpolate(gan_run, out=tmp_path / "i.png", rows=0)
    with pytest.raises(ConfigError, match="n >= 1"):
        gen.quality(gan_run, n=-1)
    # a GAN run given to the classification commands: told what it is, not a KeyError from model.json
    for command in (["evaluate", gan_run], ["predict", gan_run, tmp_path], ["attack", gan_run, "--eps", "0.1"],
                    ["train", "--resume", gan_run]):
        bad = run_optik(*command, check=False)
        assert bad.returncode == 2 and ("optik gan train" in bad.stderr or "holds a GAN" in bad.stderr), bad.stderr


def test_quality_on_a_subset_compares_with_every_class(gan_run):
    """The test split is sorted by class: --n must draw across it, not take its first (all-zero) images."""
    from optik.data import load_dataset, split_dataset
    from optik.data.splits import random_subset

    ds = load_dataset("mnist5k")
    splits = split_dataset(ds, val_fraction=0.1, test_fraction=0.2, seed=0)
    idx = splits["test"]
    assert len(set(ds.labels[idx[:50]].tolist())) == 1  # the trap
    pick = random_subset(idx, 50, seed=0)
    assert len(set(ds.labels[pick].tolist())) == 10 and pick.tolist() == sorted(set(pick.tolist()))
    assert torch.equal(pick, random_subset(idx, 50, seed=0)) and not torch.equal(pick, random_subset(idx, 50, seed=1))
    assert torch.equal(random_subset(idx, None, seed=0), idx)
    full = json.loads((gan_run / "metrics.json").read_text())["test"]  # all test images (see the test above)
    sub = gen.quality(gan_run, n=300)
    assert sub["n_real"] == 300 and full["n_real"] == len(idx)
    assert sub["fid"] < 1.5 * full["fid"]  # a fair sample of the test set (37.1 vs 36.3 when written)


def test_latent_mixture_density_and_samples_match_scikit_learn():
    from sklearn.mixture import GaussianMixture

    from optik.generative.latent import LatentMixture

    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[3.0, 0.0, 0.0], [-3.0, 1.0, 0.0], [0.0, -2.0, 2.0]])
    codes = torch.cat([c + torch.randn(400, 3, generator=g) @ torch.diag(torch.tensor([1.0, 0.5, 0.2]))
                       for c in centers])
    mix = LatentMixture.fit(codes, 3, seed=0)
    ref = GaussianMixture(3, covariance_type="full", reg_covar=1e-6, random_state=0).fit(codes.double().numpy())
    z = torch.randn(50, 3, generator=g) * 2
    torch.testing.assert_close(mix.log_prob(z), torch.from_numpy(ref.score_samples(z.double().numpy())),
                               rtol=1e-5, atol=1e-4)  # buffers hold float32 copies of sklearn's float64 fit
    # Samples follow the mixture: its mean and covariance (law of total covariance) within Monte Carlo error.
    s = mix.sample(200_000, generator=torch.Generator().manual_seed(1)).double()
    w, m = torch.from_numpy(ref.weights_), torch.from_numpy(ref.means_)
    mean = (w[:, None] * m).sum(0)
    cov = (w[:, None, None] * (torch.from_numpy(ref.covariances_) + (m - mean)[:, :, None] * (m - mean)[:, None, :])
           ).sum(0)
    torch.testing.assert_close(s.mean(0), mean, atol=0.02, rtol=0)
    torch.testing.assert_close(s.T.cov(), cov, atol=0.05, rtol=0.01)
    # Seeded, and temperature shrinks each component's spread around its mean (0: the means themselves).
    torch.testing.assert_close(mix.sample(5, generator=torch.Generator().manual_seed(2)),
                               mix.sample(5, generator=torch.Generator().manual_seed(2)))
    at0 = mix.sample(100, generator=torch.Generator().manual_seed(3), temperature=0.0)
    assert ((at0[:, None, :] - mix.means[None]).norm(dim=2).min(1).values < 1e-5).all()
    with pytest.raises(ValueError, match="at least 20 codes"):
        LatentMixture.fit(codes[:5], 10)


def test_vae_samples_from_its_latent_mixture_saved_with_the_model(vae_run, tmp_path):
    from optik.generative.models import load_generative

    model = vae_run.model
    assert model.mixture is not None and model.mixture.components == 10 and model.codes_from == "fitted"
    # The mixture was fitted to the training images' posterior means under the kept weights.
    ds = optik.load_dataset("mnist5k")
    from optik.data import split_dataset

    train = ds.images[split_dataset(ds, val_fraction=0.1, test_fraction=0.2, seed=0)["train"]]
    codes = model.encode(train.float() / 255)
    torch.testing.assert_close(model.mixture.weights @ model.mixture.means, codes.mean(0), atol=1e-3, rtol=0)
    # Saved and loaded with the run: the same images from the same seed; the model's prior on request.
    loaded = load_generative(vae_run.run_dir)
    assert loaded.codes_from == "fitted"
    a, b = gen.sample(vae_run.run_dir, n=8, seed=4), gen.sample(model, n=8, seed=4)
    torch.testing.assert_close(a, b)
    z = model.vae.prior.sample(8, generator=generator(4, "sample"))  # the learned mixture prior's own draw
    torch.testing.assert_close(gen.sample(vae_run.run_dir, n=8, seed=4, codes="prior"), model.sample_from(z))
    torch.testing.assert_close(gen.sample(model, n=8, seed=4), a)  # sample() put the model's own choice back
    # Both samplers' quality is in metrics.json; the CLI switch and the errors.
    m = vae_run.metrics
    assert m["codes_from"] == "fitted" and m["test"]["fid"] != m["test_prior_codes"]["fid"]
    out = run_optik("sample", vae_run.run_dir, "--n", "4", "--codes", "prior", "--out", tmp_path / "s.npz")
    assert out.returncode == 0
    with pytest.raises(ConfigError, match="codes from one of"):
        model.draw_codes_from("uniform")
    plain = VAEModel(model.vae, arch=model.arch, latent_dim=model.latent_dim, channels=1, image_size=(28, 28),
                     classes=model.classes)
    assert plain.codes_from == "prior"
    with pytest.raises(ConfigError, match="latent_mixture=0"):
        plain.draw_codes_from("fitted")


def test_mixture_prior_density_equals_torch_distributions_and_its_kl_estimate_is_unbiased():
    from optik.generative.losses import kl_to_prior
    from optik.generative.nets import MixturePrior

    torch.manual_seed(0)
    prior = MixturePrior(5, 3)
    with torch.no_grad():
        prior.logvars.uniform_(-1, 1)
        prior.logits.normal_()
    ref = torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(logits=prior.logits),
        torch.distributions.Independent(torch.distributions.Normal(prior.means, (0.5 * prior.logvars).exp()), 1))
    z = torch.randn(40, 3) * 2
    torch.testing.assert_close(prior.log_prob(z), ref.log_prob(z))
    # Samples come from it: their mean and covariance match the mixture's within Monte Carlo error.
    s = prior.sample(100_000, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(s.mean(0), ref.mean.detach(), atol=0.02, rtol=0)
    torch.testing.assert_close(s.var(0), ref.variance.detach(), atol=0.05, rtol=0.02)
    # The one-sample KL estimate averages to KL(q || p), computed here by brute-force Monte Carlo with
    # torch.distributions (log q - log p over many codes).
    mu, logvar = torch.tensor([[0.3, -0.2, 0.5]]), torch.tensor([[-1.0, -0.5, -2.0]])
    noise = torch.randn(200_000, 3, generator=torch.Generator().manual_seed(2))
    est = kl_to_prior(mu.expand(len(noise), 3), logvar.expand(len(noise), 3), prior=prior, noise=noise)
    q = torch.distributions.Independent(torch.distributions.Normal(mu[0], (0.5 * logvar[0]).exp()), 1)
    zq = q.sample((200_000,))
    assert est.mean().item() == pytest.approx((q.log_prob(zq) - ref.log_prob(zq)).mean().item(), abs=0.02)
    with pytest.raises(ValueError, match="noise"):
        kl_to_prior(mu, logvar, prior=prior)
    torch.testing.assert_close(kl_to_prior(mu, logvar), torch.distributions.kl_divergence(
        q, torch.distributions.Independent(torch.distributions.Normal(torch.zeros(3), torch.ones(3)), 1)).view(1))


def test_vae_shifts_training_images_only_until_shift_until():
    from optik.core.config import from_dict
    from optik.training.config import VAEConfig
    from optik.training.generative import VAETask

    cfg = from_dict(VAEConfig, {"shift_pixels": 1, "shift_until": 0.7})
    task = VAETask(cfg, channels=1, image_size=(28, 28), classes=[str(i) for i in range(10)])
    task._noise = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 1, 28, 28)
    x[:, :, 10:18, 10:18] = 1.0
    done = {"share": 0.69}
    task.progress = lambda: done["share"]
    shifted = task.augment(x)
    moved = (shifted != x).flatten(1).any(1)
    assert 0.7 < moved.float().mean() < 1  # 8 of 9 offsets move the square by one pixel
    assert torch.equal(shifted.sum((1, 2, 3)), x.sum((1, 2, 3)))  # whole pixels, nothing lost inside the frame
    done["share"] = 0.7
    assert torch.equal(task.augment(x), x)
    with pytest.raises(ConfigError, match="shift_until"):
        from_dict(VAEConfig, {"shift_until": 0})
