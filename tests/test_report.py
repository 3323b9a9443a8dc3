"""`optik report`: one self-contained HTML page per run, checked as HTML, against the run's JSON, and in Chromium."""
import base64
import io
import json
import shutil
from html.parser import HTMLParser

import pytest
from PIL import Image

import optik
from optik import generative_api as gen
from optik.core.errors import RunError
from optik.report.page import Section, render
from helpers import run_optik


class Page(HTMLParser):
    """The parts of a page the tests look at: images, links, scripts, section ids, and the visible text."""

    def __init__(self, text: str):
        super().__init__()
        self.images, self.links, self.scripts, self.ids, self.chunks = [], [], 0, [], []
        self.feed(text)
        self.text = " ".join(" ".join(self.chunks).split())

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a)
        if tag in ("a", "link") and "href" in a:
            self.links.append(a["href"])
        if tag in ("script", "iframe", "object", "embed"):
            self.scripts += 1
        if "id" in a:
            self.ids.append(a["id"])

    def handle_data(self, data):
        self.chunks.append(data)


@pytest.fixture(scope="module")
def mnist_run(tmp_path_factory, small_mnist_run):
    """A small CNN with an FGSM attack and a VAE kept inside it, as `optik demo` leaves its run folder."""
    out = tmp_path_factory.mktemp("report") / "mnist"
    shutil.copytree(small_mnist_run, out)
    optik.attack(out, method="fgsm", eps=[0, 0.05, 0.1], n=100)
    gen.train_vae(data="mnist5k", width=8, hidden=64, batch_size=128, epochs=1, features=str(out),
                  quality_samples=200, out=out / "vae", progress=False)
    run_optik("report", out)
    return out


def parsed(run):
    return Page((run / "report.html").read_text(encoding="utf-8"))


def test_report_is_self_contained_and_every_image_is_a_real_png(mnist_run):
    page = parsed(mnist_run)
    assert page.scripts == 0
    assert all(href.startswith("#") for href in page.links), page.links  # in-page navigation only
    assert len(page.images) >= 10
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,") and img.get("alt")
        png = Image.open(io.BytesIO(base64.b64decode(img["src"].split(",", 1)[1])))
        png.verify()
        assert png.size[0] > 50 and png.size[1] > 50


def test_report_holds_every_chapter_with_the_runs_numbers(mnist_run):
    page = parsed(mnist_run)
    assert {"training", "evaluation", "calibration", "mistakes", "interpretability", "augmentation", "robustness",
            "generative-vae", "config"} <= set(page.ids)
    assert "binary" not in page.ids  # ten classes: no binary operating point
    m = json.loads((mnist_run / "metrics.json").read_text())
    ci = m["intervals"]["accuracy"]
    assert f"accuracy {m['accuracy']:.4f} [{ci['low']:.3f}, {ci['high']:.3f}]" in page.text
    assert f"ECE {m['calibration']['before']['ece']:.4f}" in page.text
    seven = m["per_class"]["7"]
    assert f"{seven['sensitivity']:.3f} [" in page.text
    r = json.loads((mnist_run / "attacks" / "fgsm" / "robustness.json").read_text())
    for row in r["per_eps"]:
        assert f"{row['eps']:g} {row['robust_accuracy']:.4f}" in page.text
    vae = json.loads((mnist_run / "vae" / "metrics.json").read_text())
    assert f"FID {vae['test']['fid']:.3f}" in page.text
    assert f"{vae['test_neg_elbo']['neg_elbo']:.2f}" in page.text
    alts = {img["alt"] for img in page.images}
    assert {"Grad-CAM examples", "first-layer filters", "confusion matrix", "reliability diagram",
            "fgsm: adversarial examples", "vae samples"} <= alts
    assert "training images were used as they are" in page.text  # trained with augment none


def test_binary_run_report_shows_the_operating_point(tmp_path):
    run = tmp_path / "faces"
    optik.train(data="faces", model="cnn-small", epochs=2, batch_size=32, out=run, progress=False)
    page = Page(optik.report(run).read_text(encoding="utf-8"))
    b = json.loads((run / "metrics.json").read_text())["binary"]
    assert "binary" in page.ids and f"ROC AUC {b['roc_auc']:.4f}" in page.text
    assert f"sensitivity (TPR) {b['sensitivity']:.4f}" in page.text
    assert "ROC and precision-recall curves" in {img["alt"] for img in page.images}
    assert "augmentation preview" in {img["alt"] for img in page.images}  # the default augmentation


def test_a_generative_run_gets_its_own_report(tmp_path, mnist_run):
    page = Page(optik.report(mnist_run / "vae", out=tmp_path / "vae.html").read_text(encoding="utf-8"))
    assert "generative" in page.ids and "evaluation" not in page.ids
    assert {"vae samples", "vae latent interpolations"} <= {img["alt"] for img in page.images}


def test_values_from_a_run_are_escaped():
    html = render("<title>", ["<sub>"], [Section("a<b", "x").table(("<k>",), [("<script>alert(1)</script>",)])
                                        .text("1 < 2 & 3")])
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "1 &lt; 2 &amp; 3" in html and "a&lt;b" in html


def test_report_errors_name_the_problem(tmp_path):
    out = run_optik("report", tmp_path / "missing", check=False)
    assert out.returncode == 2 and "expected a run folder" in out.stderr
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "config.yaml").write_text("command: train\nconfig: {data: mnist5k}\n")
    with pytest.raises(RunError, match="did not finish. Resume it with `optik train --resume"):
        optik.report(unfinished)


def test_report_opens_in_chromium_with_every_image_loaded(mnist_run):
    from browser import chromium_page, require_chromium

    require_chromium()
    with chromium_page() as (page, log):
        page.goto((mnist_run / "report.html").resolve().as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
        assert images and all(done and width > 0 for _, done, width in images), images
        assert page.locator("section#robustness h2").inner_text() == "Robustness"
        page.click("nav a[href='#calibration']")  # in-page navigation works
        assert page.evaluate("location.hash") == "#calibration"
        assert not log.problems(), log.problems()
