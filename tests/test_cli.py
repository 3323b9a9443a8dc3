"""The CLI end to end in subprocesses: listing, train, evaluate, predict, and clear errors."""
import json

import numpy as np
import pytest
from PIL import Image

from helpers import run_optik


def test_lists():
    out = run_optik("datasets", "--json", isolated=True)  # the real entry point, `python -m optik`, once
    assert "mnist5k" in {d["name"] for d in json.loads(out.stdout)}
    models = json.loads(run_optik("models", "--json").stdout)
    assert "cnn" in {m["name"] for m in models["cnn"]}
    assert {"ResNet50V2", "EfficientNetB7", "NASNetMobile"} <= {m["keras"] for m in models["zoo"]}


@pytest.fixture(scope="module")
def faces_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "faces"
    cfg = out.parent / "faces.yaml"
    cfg.write_text("data: faces\nmodel: cnn-small\nepochs: 12\nbatch_size: 32\nlr: 0.05\n")
    result = run_optik("train", "--config", cfg, "--out", out, "--no-progress", "--seed", "1")
    assert f"run folder: {out}" in result.stdout.replace("\n", "")
    return out


def test_binary_evaluate_with_positive_and_threshold(faces_run):
    default = json.loads(run_optik("evaluate", faces_run, "--json").stdout)
    assert default["binary"]["positive"] == "face" and default["n"] == 40
    strict = json.loads(run_optik("evaluate", faces_run, "--positive", "face", "--threshold", "0.99",
                                  "--json").stdout)
    loose = json.loads(run_optik("evaluate", faces_run, "--positive", "face", "--threshold", "0.01",
                                 "--json").stdout)
    # raising the threshold can only trade sensitivity for specificity
    assert strict["binary"]["sensitivity"] <= default["binary"]["sensitivity"] <= loose["binary"]["sensitivity"]
    assert strict["binary"]["specificity"] >= default["binary"]["specificity"] >= loose["binary"]["specificity"]
    # each set of options gets its own folder: the run's own metrics.json is never overwritten by a variant
    saved = json.loads((faces_run / "evaluations" / "faces-test-positive-face-threshold0.01" / "metrics.json")
                       .read_text())
    assert saved["binary"]["threshold"] == 0.01
    assert json.loads((faces_run / "metrics.json").read_text())["binary"]["threshold"] == 0.5
    text = run_optik("evaluate", faces_run).stdout
    assert "sensitivity" in text and "positive = 'face'" in text


def test_predict_files_and_folder(faces_run, tmp_path):
    from optik.data import load_dataset

    ds = load_dataset("faces")
    for i in (0, 150):
        Image.fromarray(ds.images[i, 0].numpy()).resize((50, 50)).save(tmp_path / f"img{i}.png")  # other size
    (tmp_path / "broken.png").write_bytes(b"\x89PNG broken")
    results = json.loads(run_optik("predict", faces_run, tmp_path, "--top-k", "2", "--json").stdout)
    assert [r["path"].split("/")[-1] for r in results] == ["broken.png", "img0.png", "img150.png"]
    assert "error" in results[0]
    for r in results[1:]:
        probs = [t["probability"] for t in r["top_k"]]
        assert len(probs) == 2 and sum(probs) == pytest.approx(1.0) and probs[0] >= probs[1]


@pytest.mark.parametrize("args,message", [
    (["evaluate", "/nonexistent/run"], "expected a run folder"),
    (["train", "--data", "mnist5", "--epochs", "1"], "Did you mean 'mnist5k'"),
    (["train", "--epochs", "0"], "epochs: expected an integer >= 1, got 0"),
    (["train", "--model", "conv(8) softmax"], "leave out 'softmax'"),
    (["predict", "/nonexistent/run", "x.png"], "expected a run folder"),
    (["train", "--data", "no/such/folder"], "got 'no/such/folder', which does not exist"),
    (["train", "--data", "digits", "--eps", "0.3"], "no eps without adversarial training"),
    (["train", "--data", "digits", "--weights", "missing.safetensors"], "'missing.safetensors', which does not exist"),
    (["models", "zzz*"], "no model matches 'zzz*'"),
    (["serve", "runs", "--port", "99999"], "expected --port in 1-65535, got 99999"),
])
def test_errors_are_one_clear_line(args, message, tmp_path):
    out = run_optik(*args, check=False)
    assert out.returncode == 2
    assert message in out.stderr and "Traceback" not in out.stderr


def test_unknown_config_key(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("epochs: 2\nlearning_rate: 0.1\n")
    out = run_optik("train", "--config", cfg, check=False)
    assert out.returncode == 2 and "unknown key 'learning_rate'" in out.stderr


def test_augment_preview_writes_a_grid(tmp_path):
    from skimage import data

    Image.fromarray(data.astronaut()[::8, ::8]).save(tmp_path / "astro.png")
    out = run_optik("augment", "preview", tmp_path / "astro.png", "--augment", "keras-classic",
                    "--fill-mode", "wrap", "--out", tmp_path / "grid.png")
    assert "preview written" in out.stdout
    grid = np.asarray(Image.open(tmp_path / "grid.png"))
    assert grid.shape[0] > 1000 and grid.shape[1] > 800  # ten rows of pictures


def test_explain_writes_a_figure_and_prints_the_prediction(faces_run, tmp_path):
    from optik import load_dataset, predict

    img = tmp_path / "face.png"
    Image.fromarray(load_dataset("faces").images[150, 0].numpy()).save(img)
    out = json.loads(run_optik("explain", faces_run, img, "--method", "gradcam", "--out", tmp_path / "cam.png",
                               "--json").stdout)
    assert out["prediction"] == predict(faces_run, [img], top_k=3)[0]["top_k"]
    assert Image.open(tmp_path / "cam.png").size[0] > 200
    text = run_optik("explain", faces_run, "--method", "filters", "--out", tmp_path / "f.png").stdout
    assert "filters" in text and (tmp_path / "f.png").is_file()
    bad = run_optik("explain", faces_run, img, "--layer", "nope", check=False)
    assert bad.returncode == 2 and "nope" in bad.stderr and "Traceback" not in bad.stderr
