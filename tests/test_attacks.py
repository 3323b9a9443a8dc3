"""Attacks against references (torchattacks) on the same model and images, and the contract every attack keeps."""
import pytest
import torch

import optik
from optik.core.errors import ConfigError, DataError
from optik.robustness import APGD, FGSM, PGD, Attack, CarliniWagnerL2, Strong, make_attack
from optik.robustness.attacks import margin

torchattacks = pytest.importorskip("torchattacks")


@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    """A CNN trained briefly on mnist5k (about 96 % test accuracy) and 200 test images of all classes."""
    out = tmp_path_factory.mktemp("attacks") / "run"
    result = optik.train(data="mnist5k", epochs=2, augment="none", out=out, progress=False)
    from optik.api import _load_splits, make_config

    ds, splits = _load_splits(make_config(data="mnist5k"))
    idx = splits["test"][::5]
    x = ds.images[idx].float() / 255
    return result.model.eval(), x, ds.labels[idx]


def _acc(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


# ------------------------------------------------------------------------------------------- vs torchattacks
def test_fgsm_identical_to_torchattacks(mnist):
    model, x, y = mnist
    ours = FGSM(model, eps=0.1)(x, y)
    ref = torchattacks.FGSM(model, eps=0.1)(x, y)
    fooled = ours.success
    assert torch.equal(ours.adv[fooled], ref[fooled])  # where ours failed it returns the clean image, by contract
    with torch.no_grad():
        assert ours.success.sum() == (model(ref).argmax(1) != y).sum()
    target = (y + 1) % 10
    ours_t = FGSM(model, eps=0.2, targeted=True)(x, y, target)
    ref_t = torchattacks.FGSM(model, eps=0.2)
    ref_t.set_mode_targeted_by_function(lambda images, labels: (labels + 1) % 10)
    ref_adv = ref_t(x, y)
    assert torch.equal(ours_t.adv[ours_t.success], ref_adv[ours_t.success])


@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_linf_identical_to_torchattacks_with_the_same_start(mnist, random_start):
    model, x, y = mnist
    ours = PGD(model, eps=0.1, alpha=0.01, steps=10, random_start=random_start, seed=7)(x, y)
    torch.manual_seed(7)  # torchattacks draws its start from the global generator: the same stream
    ref = torchattacks.PGD(model, eps=0.1, alpha=0.01, steps=10, random_start=random_start)(x, y)
    assert torch.equal(ours.adv[ours.success], ref[ours.success])
    with torch.no_grad():
        assert ours.success.sum() == (model(ref).argmax(1) != y).sum()


def test_pgd_l2_matches_torchattacks(mnist):
    model, x, y = mnist
    ours = PGD(model, eps=1.5, norm="l2", alpha=0.2, steps=10, random_start=False)(x, y)
    ref = torchattacks.PGDL2(model, eps=1.5, alpha=0.2, steps=10, random_start=False)(x, y)
    torch.testing.assert_close(ours.adv[ours.success], ref[ours.success], atol=1e-5, rtol=0)
    assert abs(ours.success.float().mean().item() - (1 - _acc(model, ref, y))) <= 0.005


def test_apgd_at_least_as_strong_as_torchattacks(mnist):
    model, x, y = mnist
    ours = APGD(model, eps=0.08, steps=50)(x, y)
    ref = torchattacks.APGD(model, eps=0.08, steps=50, loss="ce", seed=0)(x, y)
    assert (1 - ours.success.float().mean().item()) <= _acc(model, ref, y) + 0.005


def test_carlini_wagner_finds_small_perturbations_where_torchattacks_does_not(mnist):
    """The paper's C&W (tanh box that lets 0/1 pixels move, binary search over c) on 40 images: every image
    fooled, and the binary search shrinks the perturbations a single large c finds. torchattacks' version has
    neither, and at c = 1 it fails where optik's search raises c."""
    model, x, y = mnist
    x, y = x[:40], y[:40]
    with torch.no_grad():
        correct = model(x).argmax(1) == y
    ours = CarliniWagnerL2(model, steps=100, search_steps=5)(x, y)
    single = CarliniWagnerL2(model, steps=100, search_steps=1, c=100.0)(x, y)
    assert ours.success.all()
    both = ours.success & single.success & correct
    assert both.sum() >= 30
    assert ours.norms(x)["l2"][both].mean() < 0.9 * single.norms(x)["l2"][both].mean()
    ref = torchattacks.CW(model, c=1, steps=100, lr=0.01)(x, y)
    assert ours.success.float().mean() > 1 - _acc(model, ref, y)


# ------------------------------------------------------------------------------------------- the contract
ALL = [("fgsm", {}), ("pgd", {"steps": 5}), ("pgd-l2", {"steps": 10}), ("apgd", {"steps": 10}),
       ("apgd-t", {"steps": 5, "n_targets": 2}), ("strong", {"steps": 5}), ("cw", {"steps": 100, "search_steps": 3})]


def assert_attack_works(attack: Attack, x, y, *, min_success: float) -> None:
    """What every attack must show on a standard model at a large eps: it fools, and stays in the box/ball."""
    model = attack.model
    model.train()
    for p in model.parameters():
        p.grad = None  # (torchattacks' C&W leaves gradients on the model)
    result = attack(x, y)
    assert model.training, "the caller's mode is restored"
    assert all(p.grad is None for p in model.parameters()), "no gradients left on parameters"
    model.eval()
    assert result.adv.min() >= 0 and result.adv.max() <= 1
    if attack.eps is not None:
        n = result.norms(x)["linf" if attack.norm == "linf" else "l2"]
        assert n.max() <= attack.eps + 1e-5
    with torch.no_grad():
        pred = model(result.adv).argmax(1)
    assert torch.equal(result.success, pred != y), "success is what the returned images do"
    assert torch.equal(result.adv[~result.success], x[~result.success]), "failures come back as the clean image"
    assert result.success.float().mean() >= min_success, f"{attack.name} fooled only {result.success.float().mean():.2f}"


@pytest.mark.parametrize("method,kw", ALL, ids=[m for m, _ in ALL])
def test_every_attack_keeps_the_contract(mnist, method, kw):
    model, x, y = mnist
    eps = {"pgd-l2": 4.0, "cw": None}.get(method, 0.3)
    attack = make_attack(method, model, eps=eps, **kw)
    assert_attack_works(attack, x[:60], y[:60], min_success=0.6 if method == "fgsm" else 0.9)


def test_an_attack_that_returns_its_input_fails_the_suite(mnist):
    class Lazy(Attack):
        name = "lazy"

        def perturb(self, x, y, target):
            return x

    model, x, y = mnist
    with pytest.raises(AssertionError, match="fooled only"):
        assert_attack_works(Lazy(model, eps=0.3), x[:60], y[:60], min_success=0.9)


def test_invariants(mnist):
    model, x, y = mnist
    zero = PGD(model, eps=0.0)(x, y)
    assert torch.equal(zero.adv[~zero.success], x[~zero.success]) and torch.equal(zero.success, model(x).argmax(1) != y)
    fgsm = FGSM(model, eps=0.1)(x, y)
    one_step = PGD(model, eps=0.1, steps=1, alpha=0.1, random_start=False)(x, y)
    assert torch.equal(fgsm.adv, one_step.adv)
    target = (y + 3) % 10
    hit = PGD(model, eps=0.3, steps=20, targeted=True)(x[:60], y[:60], target[:60])
    with torch.no_grad():
        assert torch.equal(hit.success, model(hit.adv).argmax(1) == target[:60])
    assert hit.success.float().mean() > 0.9
    small = FGSM(model, eps=1e-4)(x, y)  # too small to fool: everything fails, flagged, clean images returned
    assert torch.equal(small.adv[~small.success], x[~small.success])
    strong = Strong(model, eps=0.08, steps=10)(x[:100], y[:100])
    apgd = APGD(model, eps=0.08, steps=10)(x[:100], y[:100])
    assert strong.success.sum() >= apgd.success.sum()


def test_margin_is_right_when_other_logits_are_negative():
    logits = torch.tensor([[1.0, -2.0, -3.0], [-1.0, -0.5, -4.0]])
    assert margin(logits, torch.tensor([0, 0])).tolist() == [3.0, -0.5]


def test_bad_input_gets_a_clear_error(mnist):
    model, x, y = mnist
    with pytest.raises(DataError, match=r"pixels in \[0, 1\]"):
        FGSM(model, eps=0.1)(x * 255, y)
    with pytest.raises(DataError, match="expected 200 labels"):
        FGSM(model, eps=0.1)(x, y[:5])
    with pytest.raises(ConfigError, match="needs target labels"):
        FGSM(model, eps=0.1, targeted=True)(x, y)
    with pytest.raises(ConfigError, match="--method one of"):
        make_attack("deepfool", model, eps=0.1)
    with pytest.raises(ConfigError, match="fgsm takes no option steps; its options: .*targeted"):
        make_attack("fgsm", model, eps=0.1, steps=10)


# ------------------------------------------------------------------------------------------- runs and training
def test_attack_cli_writes_the_report_curve_and_gallery(mnist, tmp_path):
    import json

    from helpers import run_optik

    run = tmp_path / "run"
    optik.train(data="mnist5k", epochs=1, augment="none", out=run, progress=False)
    out = run_optik("attack", run, "--method", "pgd", "--eps", "0,0.1,0.3", "--n", "100", "--steps", "5")
    assert "robust acc" in out.stdout and "clean accuracy" in out.stdout
    report = json.loads((run / "attacks" / "pgd" / "robustness.json").read_text())
    rows = report["per_eps"]
    assert [r["eps"] for r in rows] == [0, 0.1, 0.3] and report["n"] == 100
    assert rows[0]["robust_accuracy"] == rows[0]["clean_accuracy"] == report["clean_accuracy"]
    assert rows[2]["robust_accuracy"] < rows[1]["robust_accuracy"] < rows[0]["robust_accuracy"]
    assert rows[2]["linf_mean"] <= 0.3 + 1e-6 and rows[2]["attack_success_rate"] > 0.9
    assert rows[2]["true_class_confidence_adv"] < rows[2]["true_class_confidence_clean"]
    assert report["flags"] == [] and len(report["fgsm_robust_accuracy"]) == 3
    for name in ("robustness.png", "gallery.png"):
        assert (run / "attacks" / "pgd" / name).stat().st_size > 5000
    bad = run_optik("attack", run, "--eps", "0,x", check=False)
    assert bad.returncode == 2 and "expected --eps as comma-separated numbers" in bad.stderr


def test_sanity_flags_name_what_they_saw():
    from optik.robustness.evaluate import sanity_flags

    rows = [{"eps": e, "robust_accuracy": a, "clean_accuracy": 0.99} for e, a in ((0, 0.99), (0.1, 0.5), (0.2, 0.7))]
    flags = sanity_flags({"method": "pgd", "per_eps": rows, "fgsm_robust_accuracy": [0.99, 0.4, 0.3],
                          "gradients": {"zero_gradient_share": 0.2, "nonfinite_gradient": True}})
    text = "\n".join(flags)
    assert "rises with eps: 0.500 at eps=0.1 -> 0.700 at eps=0.2" in text
    assert "pgd is weaker than FGSM at eps=0.1" in text and "NaN or infinite" in text and "20.0 %" in text


def test_short_adversarial_training_raises_robust_accuracy(mnist, tmp_path):
    """Two epochs of Madry PGD training vs two of standard training on mnist5k, eps 0.3: PGD-20 robust accuracy
    on 200 test images rises by >= 20 points. The standard model is the fixture's (the same two epochs)."""
    standard, x, y = mnist
    r = optik.train(data="mnist5k", epochs=2, augment="none", adversarial="pgd", eps=0.3, attack_steps=5,
                    out=tmp_path / "pgd", progress=False)
    robust = {name: 1 - PGD(model, eps=0.3, steps=20)(x, y).success.float().mean().item()
              for name, model in {"standard": standard, "pgd": r.model}.items()}
    assert robust["pgd"] >= robust["standard"] + 0.20, robust
