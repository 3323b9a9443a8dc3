"""``optik serve`` end to end: the playground in a subprocess on 127.0.0.1, driven in headless Chromium.

A person's path through the page: it loads with no console error and nothing fetched from the internet; a digit is
uploaded and the top-k shown equal ``optik.predict`` on the same file; an attack shows its image, perturbation and
new probabilities; an example of the test split can be picked; refused uploads say why on the page.
Skipped without Chromium, failed instead when ``OPTIK_REQUIRE_BROWSER=1`` (CI).
"""
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
from PIL import Image

from browser import chromium_page, require_chromium

require_chromium()
pytest.importorskip("gradio")
import optik  # noqa: E402

STARTUP_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(proc: subprocess.Popen, url: str, log_path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the playground exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    pytest.fail(f"the playground did not answer at {url} within {STARTUP_S} s:\n{log_path.read_text()}")


@pytest.fixture(scope="module")
def run(small_mnist_run):
    return small_mnist_run


@pytest.fixture(scope="module")
def files(run, tmp_path_factory):
    """A digit of the run's test split as PNG; a text file and a truncated PNG; a file over the upload limit."""
    from optik.runs import Run

    d = tmp_path_factory.mktemp("e2e-files")
    Image.fromarray(Run.open(run).split("test").take([7])[0, 0].numpy()).save(d / "digit.png")
    (d / "notes.png").write_text("a text file with an image's name\n")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(d / "noise.png")  # about 12 KB
    data = (d / "noise.png").read_bytes()
    (d / "cut.png").write_bytes(data[:len(data) // 2])
    (d / "big.png").write_bytes(np.random.default_rng(1).bytes(60_000))  # over the 0.05 MB limit below
    return d


@pytest.fixture(scope="module")
def server(run, tmp_path_factory):
    """``python -m optik.serve RUN --port N`` (default host), stopped after the module."""
    port = _free_port()
    log_path = tmp_path_factory.mktemp("e2e-server") / "server.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1",  # one image at a time: one thread
           "GRADIO_TEMP_DIR": str(log_path.parent / "gradio-cache")}  # uploads land in this test's folder
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "optik.serve", str(run), "--port", str(port),
                                 "--max-upload-mb", "0.05"], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(proc, url, log_path)
        yield url, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log_path.read_text(), log_path.read_text()


def _label(page, elem_id: str) -> tuple[str, list[tuple[str, int, float]]]:
    """A gr.Label as shown: the heading, then (class, percent shown, probability in the meter) per row."""
    heading = page.inner_text(f"#{elem_id} [data-testid='label-output-value']")
    rows = page.eval_on_selector_all(
        f"#{elem_id} [data-testid$='-confidence-set']",
        "els => els.map(e => [e.querySelector('dt').innerText, e.querySelector('dd').innerText, "
        "e.querySelector('meter').getAttribute('value')])")
    return heading, [(c, int(p.rstrip("%")), float(v)) for c, p, v in rows]


def _wait_for_text(page, selector: str, text: str) -> str:
    page.wait_for_function("([s, t]) => (document.querySelector(s)?.innerText || '').includes(t)",
                           arg=[selector, text])
    return page.inner_text(selector)


def _image_loaded(page, selector: str) -> bool:
    return page.eval_on_selector(f"{selector} img", "img => img.complete && img.naturalWidth > 0")


def test_predict_attack_and_examples_in_the_browser(server, run, files):
    url, _ = server
    expected = optik.predict(run, [files / "digit.png"], top_k=5)[0]["top_k"]
    with chromium_page() as (page, log):
        page.goto(url)
        page.wait_for_selector("#upload input[type=file]", state="attached")
        assert page.title() == "optik playground"
        page.set_input_files("#upload input[type=file]", str(files / "digit.png"))
        status = _wait_for_text(page, "#status", "uploaded digit.png")
        # the top-k shown equal optik.predict on the same file: as displayed (percent) and in the meters
        heading, rows = _label(page, "prediction")
        assert heading == expected[0]["class"] and [c for c, _, _ in rows] == [e["class"] for e in expected]
        for (_, shown, value), e in zip(rows, expected):
            assert abs(shown - 100 * e["probability"]) <= 0.5 + 1e-9 and value == pytest.approx(e["probability"])
        assert f"predicts {expected[0]['class']} ({expected[0]['probability']:.2%})" in status
        assert _image_loaded(page, "#shown")

        page.check("#attack-method input[value='fgsm']")
        eps = page.locator("#attack-eps input[type=number]")
        eps.fill("0.2")
        eps.press("Enter")
        page.click("#attack-run")
        info = _wait_for_text(page, "#attack-info", "Perturbation")
        assert "FGSM" in info and "eps = 0.200" in info and f"predicted class {expected[0]['class']}" in info
        linf = float(re.search(r"Linf = ([0-9.]+)", info).group(1))
        assert 0 < linf <= 0.2 + 1e-4 and "magnified x" in info
        heading, rows = _label(page, "attack-prediction")
        assert heading == rows[0][0] and len(rows) == 5
        if "succeeded" in info:
            assert f"now predicted {heading}" in info and heading != expected[0]["class"]
        assert _image_loaded(page, "#attack-image") and _image_loaded(page, "#attack-delta")
        page.wait_for_selector("#gradcam img")
        assert len(page.query_selector_all("#aug-gallery img")) == 6

        page.click("#examples button[aria-label^='Thumbnail 3 of']")  # a test image: its true class is shown
        status = _wait_for_text(page, "#status", "test image #")
        assert "true class" in status
        assert not log.problems(), log.problems()


def test_refused_uploads_say_why_on_the_page(server, files):
    url, _ = server
    with chromium_page() as (page, log):
        page.goto(url)
        for name, message in (("notes.png", "is not an image optik can read"),
                              ("cut.png", "is a truncated or corrupt PNG file")):
            page.set_input_files("#upload input[type=file]", str(files / name))  # a refused file leaves the box
            status = _wait_for_text(page, "#status", f"{name} {message}")
            assert status.startswith("Upload refused.") and "Traceback" not in page.inner_text("body")
        assert not log.problems(), log.problems()
        # over the size limit, Gradio refuses the file itself (in the page, then on the server)
        page.set_input_files("#upload input[type=file]", str(files / "big.png"))
        page.wait_for_selector("text=exceed the maximum allowed size")


def test_server_is_local_and_limits_upload_size(server, files):
    url, port = server
    with pytest.raises(OSError):  # bound to 127.0.0.1 only: another loopback address is refused
        socket.create_connection(("127.0.0.2", port), timeout=2).close()
    body = b"--x\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n" \
           b"Content-Type: image/png\r\n\r\n" + (files / "big.png").read_bytes() + b"\r\n--x--\r\n"
    request = urllib.request.Request(url + "gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": "multipart/form-data; boundary=x"})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=10)
    assert e.value.code == 413
