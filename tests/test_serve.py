"""The playground's logic and upload checks, without a browser: its numbers against optik's own functions (predict,
the attack classes, augment, Grad-CAM) and every refused upload with a message a person can act on."""
import dataclasses
import functools
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

import optik
from optik.augment.generator import AugmentConfig, augment
from optik.augment.presets import KNOBS
from optik.core.errors import ConfigError
from optik.evaluation.evaluate import predict_proba
from optik.robustness.attacks import FGSM, PGD
from optik.serve import logic
from optik.serve.uploads import UploadError, decode_upload

gr = pytest.importorskip("gradio")
from optik.serve.app import Current, Playground, attack_text, build_app, knob_names, offline_theme  # noqa: E402


@pytest.fixture(autouse=True)
def _gradio_cache(tmp_path, monkeypatch):
    """Each test's Gradio stores files in a folder of its own that exists (never the user's shared
    ``<tmp>/gradio``, which a fresh machine does not have until some Gradio server made it)."""
    folder = tmp_path / "gradio-cache"
    folder.mkdir()
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(folder))
    return folder


@pytest.fixture(autouse=True)
def _one_thread():
    """One image at a time: a second thread only adds synchronisation, and on a busy machine spinning threads
    made C&W's 600 small steps 15 times slower (3 s -> 50 s on 2 shared cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def run(small_mnist_run):
    return small_mnist_run


@pytest.fixture(scope="module")
def page(run):
    return Playground([run])


@pytest.fixture(scope="module")
def model(page):
    return next(iter(page.runs.values())).model


@pytest.fixture(scope="module")
def example(page):
    """A test-split image ``uint8 1 x 1 x 28 x 28`` and its true label."""
    e = next(iter(page.runs.values())).examples[3]
    return e.image, e.label


@pytest.fixture(scope="module")
def files(tmp_path_factory, example):
    """Image files made from a test digit: grey PNG, RGB PNG and JPEG (tinted, so the channels differ)."""
    d = tmp_path_factory.mktemp("uploads")
    grey = example[0][0, 0].numpy()
    rgb = np.stack([grey, (grey * 0.6).astype(np.uint8), 255 - grey], axis=2)
    Image.fromarray(grey).save(d / "digit.png")
    Image.fromarray(rgb).resize((56, 56)).save(d / "rgb.png")
    Image.fromarray(rgb).save(d / "rgb.jpg", quality=90)
    return d


def _png_bomb(path, width: int, height: int) -> None:
    """A valid 1-bit PNG of ``width x height`` black pixels; deflate shrinks rows of zeros about 1000-fold, so
    30000 x 30000 (900 megapixels, 112 MB of rows) is a file of about 110 KB."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, row = zlib.compressobj(9), bytes(1 + (width + 7) // 8)  # filter byte + packed bits
    idat = b"".join(z.compress(row * min(1000, height - i)) for i in range(0, height, 1000)) + z.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def _expected(run, path, k=5):
    return {e["class"]: e["probability"] for e in optik.predict(run, [path], top_k=k)[0]["top_k"]}


# ------------------------------------------------------------------------------------------------ predict
@pytest.mark.parametrize("name", ["digit.png", "rgb.png", "rgb.jpg"])
def test_upload_probabilities_equal_optik_predict(run, page, files, name):
    state, shown, status, probs, *_ = page.upload(next(iter(page.runs)), str(files / name))
    expected = _expected(run, files / name)
    assert list(probs) == list(expected)  # same classes, same order
    np.testing.assert_allclose(list(probs.values()), list(expected.values()), rtol=0, atol=1e-12)
    assert state.x.shape == (1, 1, 28, 28) and state.x.dtype == torch.uint8 and state.label is None
    top, p = next(iter(expected.items()))
    assert f"predicts **{top}** ({p:.2%})" in status and shown.shape == (224, 224)  # 28 px enlarged x8


def test_examples_come_from_the_test_split_with_their_labels(run, page):
    from optik.api import conform
    from optik.data import load_dataset, split_dataset
    from optik.runs import Run

    opened = Run.open(run)
    model = opened.model()
    ds = load_dataset("mnist5k")  # the run's data, read independently of the playground
    test = split_dataset(ds, val_fraction=0.1, test_fraction=0.2, seed=0)["test"]
    examples = next(iter(page.runs.values())).examples
    assert len(examples) == 8 and {e.label for e in examples} == set(range(8))  # one per class first
    assert all(0 <= e.index < len(test) for e in examples)  # positions in the test split
    e = examples[5]
    j = int(test[e.index])
    assert torch.equal(e.image, conform(ds.images[j:j + 1], model)) and e.label == ds.labels[j]
    state, _, status, probs, *_ = page.pick_example(next(iter(page.runs)), 5)
    assert state.label == e.label and f"true class **{model.classes[e.label]}**" in status
    np.testing.assert_allclose(list(probs.values()), sorted(
        predict_proba(model, e.image)[0], reverse=True)[:5], atol=1e-12)


# ------------------------------------------------------------------------------------------------ attack
@pytest.mark.parametrize("method,cls", [("fgsm", FGSM), ("pgd", PGD)])
def test_attack_equals_the_optik_attack_class(model, example, method, cls):
    x, y = example
    eps = 0.15
    view = logic.run_attack(model, x, method=method, eps=eps, label=y, steps=10, seed=3)
    options = {"steps": 10} if method == "pgd" else {}
    ref = cls(model, eps=eps, seed=3, **options)(x.float() / 255, torch.tensor([y]))
    assert torch.equal(view.adv, ref.adv) and view.success == bool(ref.success[0])
    delta = view.adv - x.float() / 255
    assert view.adv.min() >= 0 and view.adv.max() <= 1
    assert delta.abs().max() <= eps + 1e-6 and view.linf == pytest.approx(float(delta.abs().max()))
    assert view.l2 == pytest.approx(float(delta.norm()), rel=1e-5)
    expected = logic.probabilities(model, ref.adv)[0]
    assert view.probabilities == expected


def test_attack_moves_the_image_and_magnifies_the_perturbation(model, example):
    x, y = example
    view = logic.run_attack(model, x, method="pgd", eps=0.3, label=y, steps=20)
    assert view.success, "PGD at eps 0.3 should fool a one-epoch CNN on this digit"
    assert next(iter(view.probabilities)) != model.classes[y] and view.linf > 0.1
    delta = view.adv - x.float() / 255
    assert view.magnification == pytest.approx(0.5 / float(delta.abs().max()))
    torch.testing.assert_close(view.perturbation, (0.5 + delta * view.magnification).clamp(0, 1))
    assert view.perturbation.min() >= 0 and view.perturbation.max() <= 1


@pytest.mark.parametrize("method", ["fgsm", "pgd"])
def test_eps_zero_returns_the_clean_prediction(model, example, method):
    x, y = example
    view = logic.run_attack(model, x, method=method, eps=0.0, label=y)
    assert torch.equal(view.adv, x.float() / 255) and view.l2 == 0 and view.linf == 0
    assert view.magnification is None and torch.all(view.perturbation == 0.5)
    assert view.probabilities == logic.probabilities(model, x)[0]


def test_cw_is_minimal_perturbation_and_ignores_eps(model, example):
    x, y = example
    attack = logic.make_page_attack(model, method="cw", eps=0.01)
    assert attack.eps is None and attack.norm == "l2"
    view = logic.run_attack(model, x, method="cw", eps=0.01, label=y)
    assert view.adv.min() >= 0 and view.adv.max() <= 1
    if view.success:
        assert next(iter(view.probabilities)) != model.classes[y]
        assert view.l2 < logic.run_attack(model, x, method="pgd", eps=0.3, label=y).l2


def test_page_attack_labels_uploads_with_the_clean_prediction(page, model, files):
    name = next(iter(page.runs))
    state = page.upload(name, str(files / "digit.png"))[0]
    adv, delta, probs, text = page.attack(name, state, "fgsm", 0.1, 10)
    predicted = next(iter(logic.probabilities(model, state.x)[0]))
    assert f"away from the predicted class **{predicted}**" in text and "eps = 0.100" in text
    assert adv.shape == delta.shape == (224, 224) and len(probs) == 5
    assert page.attack(name, None, "pgd", 0.1, 10)[3].startswith("Pick an example")
    with pytest.raises(ConfigError, match="attack method"):
        logic.make_page_attack(model, method="apgd", eps=0.1)


# ------------------------------------------------------------------------------------------------ augment
def test_page_knobs_are_optiks_augmentation_knobs():
    assert set(knob_names()) - {"brightness"} <= set(KNOBS)
    assert logic.augment_config(brightness=0.2).brightness_range == pytest.approx((0.8, 1.2))
    with pytest.raises(ConfigError, match="brightness"):
        logic.augment_config(brightness=1.5)


def test_augmentation_at_identity_returns_the_input_exactly(example):
    x, _ = example
    assert logic.augment_config() is None
    for cfg in (None, AugmentConfig(), AugmentConfig(fill_mode="wrap")):
        out = logic.augment_samples(x, cfg, n=4, seed=1)
        assert torch.equal(out, (x.float() / 255).expand(4, -1, -1, -1))


@pytest.mark.parametrize("knobs", [dict(rotation_range=30), dict(rotation_range=20, zoom_range=0.2, shear_range=10,
                                                                  width_shift_range=0.1, horizontal_flip=True,
                                                                  brightness=0.3, fill_mode="reflect")])
def test_augmentation_equals_optik_augment_for_the_same_seed(example, knobs):
    x, _ = example
    cfg = logic.augment_config(**knobs)
    out = logic.augment_samples(x, cfg, n=6, seed=5)
    ref, _ = augment((x.float() / 255).expand(6, -1, -1, -1).contiguous(), cfg,
                     generator=torch.Generator().manual_seed(5))
    assert torch.equal(out, ref.clamp(0, 1))
    assert not torch.equal(out[0], x[0].float() / 255)  # the knobs did something
    assert not torch.equal(out, logic.augment_samples(x, cfg, n=6, seed=6))


def test_page_augment_captions_are_the_models_predictions(page, model, example):
    x, y = example
    knobs = dict(zip(knob_names(), [30, 0, 0, 0, 0, 0, False, False, "nearest", 0]))
    shown, info = page.augment(next(iter(page.runs)), Current(x, y, "test"), 2, *knobs.values())
    samples = logic.augment_samples(x, logic.augment_config(**knobs), n=6, seed=2)
    expected = [next(iter(p.items())) for p in logic.probabilities(model, samples, top_k=1)]
    assert [c for _, c in shown] == [f"{k} ({p:.0%})" for k, p in expected] and info == ""


@pytest.mark.parametrize("knob,value", [("rotation_range", float("nan")), ("zoom_range", float("inf")),
                                        ("cval", "grey"), ("seed", float("nan")), ("seed", 1.5)])
def test_page_refuses_bad_augmentation_values_with_a_reason(page, example, knob, value):
    """The page's API takes any JSON: a NaN knob used to end in an uncaught ConfigError and a generic error."""
    x, y = example
    knobs = dict(zip(knob_names(), [0, 0, 0, 0, 0, 0, False, False, "nearest", 0]))
    seed = 0
    if knob == "seed":
        seed = value
    else:
        knobs[knob] = value
    shown, info = page.augment(next(iter(page.runs)), Current(x, y, "test"), seed, *knobs.values())
    assert shown == [] and info.startswith("**Augmentation refused.**") and knob in info


@pytest.mark.parametrize("eps,steps,match", [(float("nan"), 10, "eps"), (0.1, float("nan"), "steps"),
                                             (0.1, 0, "steps"), (-1.0, 10, "eps"), (0.1, "ten", "steps")])
def test_page_refuses_bad_attack_values_with_a_reason(page, example, eps, steps, match):
    x, y = example
    image, delta, probs, text = page.attack(next(iter(page.runs)), Current(x, y, "test"), "pgd", eps, steps)
    assert image is None and delta is None and probs is None
    assert text.startswith("**Attack refused.**") and match in text and "Traceback" not in text


# ------------------------------------------------------------------------------------------------ Grad-CAM
def test_gradcam_overlay_is_optik_interpret(page, model, example):
    interpret = pytest.importorskip("optik.interpret")
    x, y = example
    out = logic.gradcam_overlay(model, x)
    ref = interpret.overlay(x[0, 0].numpy(), interpret.gradcam(model, x.float() / 255)[0].numpy())
    assert out.dtype == np.uint8 and out.shape == (28, 28, 3) and np.array_equal(out, ref)
    image, text = page.gradcam(next(iter(page.runs)), Current(x, y, "test"))
    predicted = next(iter(logic.probabilities(model, x)[0]))
    assert image.shape == (224, 224, 3) and f"predicted class **{predicted}**" in text


# ------------------------------------------------------------------------------------------------ uploads
def test_oversize_upload_is_refused_before_reading(tmp_path):
    f = tmp_path / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)).save(f)
    with pytest.raises(UploadError, match=r"noise.png is \d+\.\d KB; the playground accepts uploads up to 1.0 KB"):
        decode_upload(f, max_bytes=1000)
    assert decode_upload(f, max_bytes=10**6).shape == (64, 64)
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(UploadError, match="empty.png is empty"):
        decode_upload(tmp_path / "empty.png")


def test_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    small = tmp_path / "small.png"
    _png_bomb(small, 100, 50)  # the same construction, small: a valid image of zeros
    assert np.array_equal(decode_upload(small), np.zeros((50, 100), np.uint8))
    bomb, big = tmp_path / "bomb.png", tmp_path / "big.png"
    _png_bomb(bomb, 30000, 30000)
    _png_bomb(big, 3000, 3000)
    assert bomb.stat().st_size < 200_000
    def no_decoding(self):
        raise AssertionError("decoded pixels of a file that should be refused from its header")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(UploadError, match="bomb.png declares too many pixels .* refused before decoding"):
        decode_upload(bomb)
    with pytest.raises(UploadError, match="big.png declares 3000 x 3000 pixels .* at most 1 megapixels"):
        decode_upload(big, max_pixels=1_000_000)


def test_truncated_and_fake_images_are_refused(tmp_path, files):
    data = (files / "rgb.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    with pytest.raises(UploadError, match="cut.png is a truncated or corrupt PNG file"):
        decode_upload(tmp_path / "cut.png")
    (tmp_path / "notes.png").write_text("this is a text file, renamed\n")
    with pytest.raises(UploadError, match="notes.png is not an image optik can read"):
        decode_upload(tmp_path / "notes.png")
    (tmp_path / "eps.png").write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")
    with pytest.raises(UploadError, match="not an image"):  # PIL's EPS plugin (Ghostscript) is never tried
        decode_upload(tmp_path / "eps.png")


def test_refused_upload_shows_a_message_and_clears_the_page(page, tmp_path):
    (tmp_path / "notes.png").write_text("not an image")
    state, shown, status, probs, *attack = page.upload(next(iter(page.runs)), str(tmp_path / "notes.png"))
    assert state is None and shown is None and probs is None and attack == [None, None, None, ""]
    assert status.startswith("**Upload refused.** notes.png is not an image") and "Traceback" not in status


def test_gradio_hands_uploads_over_undecoded(tmp_path, monkeypatch):
    """gr.File gives the handler the stored path without opening it; gr.Image(type="filepath") would open it
    with PIL first (and fail on a bomb or a fake image with Gradio's own error, before optik sees the file)."""
    from gradio.data_classes import FileData

    from optik.data.folder import IMAGE_EXTENSIONS

    bomb = tmp_path / "bomb.png"
    _png_bomb(bomb, 30000, 30000)
    upload = gr.File(file_types=list(IMAGE_EXTENSIONS), type="filepath")
    with monkeypatch.context() as m:
        m.setattr(Image, "open", lambda *a, **k: pytest.fail("gr.File opened the upload"))
        assert str(upload.preprocess(FileData(path=str(bomb), orig_name="bomb.png"))) == str(bomb)
    with pytest.raises(Image.DecompressionBombError):
        gr.Image(type="filepath").preprocess(FileData(path=str(bomb), orig_name="bomb.png"))
    with pytest.raises(gr.Error, match="Invalid file type"):  # the extension check is Gradio's
        upload.preprocess(FileData(path=str(tmp_path / "notes.txt"), orig_name="notes.txt"))


# ------------------------------------------------------------------------------------------------ serve
def test_serve_is_private_and_offline_by_default(run, monkeypatch):
    from optik.serve import serve

    launched = {}

    @functools.wraps(gr.Blocks.launch)  # serve() passes what this Gradio's launch() accepts: keep its signature
    def launch(self, **kw):
        launched.update(app=self, **kw)

    monkeypatch.setattr(gr.Blocks, "launch", launch)
    monkeypatch.delenv("GRADIO_TEMP_DIR")  # serve() makes a cache folder of its own, and removes it at exit
    serve([run], max_upload_mb=3)
    cache = Path(os.environ["GRADIO_TEMP_DIR"])
    assert cache.is_dir() and cache.name.startswith("optik-serve-") and cache != Path(tempfile.gettempdir()) / "gradio"
    shutil.rmtree(cache)
    assert launched["server_name"] == "127.0.0.1" and launched["share"] is False
    assert launched["max_file_size"] == 3_000_000 and launched["show_error"] is False
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and launched["app"].analytics_enabled is False
    theme = launched.get("theme") or offline_theme()
    assert "googleapis" not in theme._get_theme_css() and not any("http" in str(s) for s in theme._stylesheets)
    components = {c.elem_id: c for c in launched["app"].blocks.values() if getattr(c, "elem_id", None)}
    assert isinstance(components["upload"], gr.File) and components["upload"].type == "filepath"
    assert {"examples", "shown", "status", "prediction", "attack-method", "attack-eps", "attack-run",
            "attack-image", "attack-delta", "attack-prediction", "attack-info", "aug-gallery", "gradcam"} <= set(
        components)
    assert components["model"].visible is False  # one run: no model dropdown


def test_several_runs_get_a_model_dropdown(run, page, monkeypatch):
    loaded = next(iter(page.runs.values()))
    monkeypatch.setattr(logic, "load_run", lambda r, *, name, n_examples: dataclasses.replace(loaded, name=name))
    two = Playground([run, run])
    assert list(two.runs) == [run.name, str(run)]  # the same folder name twice: the second by its path
    app = build_app([run, run])
    dropdown = next(c for c in app.blocks.values() if getattr(c, "elem_id", None) == "model")
    assert dropdown.visible is True and [v for _, v in dropdown.choices] == [run.name, str(run)]


def test_attack_text_says_what_happened():
    view = logic.AttackView(adv=torch.zeros(1, 1, 2, 2), perturbation=torch.full((1, 1, 2, 2), 0.5),
                            magnification=None, probabilities={"b": 0.7, "a": 0.3}, success=False, label=0,
                            clean_class=1, l2=0.0, linf=0.0)
    text = attack_text(view, ["a", "b"], method="pgd", eps=0.05, truth=True)
    assert "away from the true class **a** (which the model already gets wrong: it predicts **b**)" in text
    assert "the attack failed; the clean image is shown" in text and "L2 = 0.0000, Linf = 0.0000; zero" in text
    text = attack_text(dataclasses.replace(view, success=True, clean_class=0, magnification=12.5), ["a", "b"],
                       method="cw", eps=0.05, truth=False)
    assert "eps is not used" in text and "predicted class **a**:" in text and "now predicted **b** (70.00%)" in text
    assert "magnified x12.5" in text
