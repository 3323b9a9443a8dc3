"""The main job, as `make demo` runs it (slow: about two minutes on 2 cores)."""
import json

import pytest

from helpers import run_optik


@pytest.mark.slow
def test_demo_reaches_the_accuracy_bar(tmp_path):
    out = tmp_path / "demo"
    result = run_optik("demo", "--out", out, "--no-progress")
    assert f"run folder: {out}" in result.stdout.replace("\n", "")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 1000 and metrics["accuracy"] >= 0.985
    assert "test" in result.stdout and "_label" in result.stdout  # the predictions on PNG files were printed
    robustness = json.loads((out / "attacks" / "pgd" / "robustness.json").read_text())  # the attack step
    rows = robustness["per_eps"]
    assert rows[0]["eps"] == 0 and rows[0]["robust_accuracy"] == rows[0]["clean_accuracy"] > 0.98
    assert rows[-1]["robust_accuracy"] < 0.5  # an undefended CNN at eps 0.2
    assert (out / "attacks" / "pgd" / "gallery.png").is_file() and "robust acc" in result.stdout
    vae = json.loads((out / "vae" / "metrics.json").read_text())  # the generative step
    assert vae["test"]["n_fake"] == 1000 and vae["test"]["fid"] < 30 and vae["test_neg_elbo"]["neg_elbo"] < 130
    assert (out / "vae" / "figures" / "samples.png").is_file() and "FID" in result.stdout
    report = (out / "report.html").read_text(encoding="utf-8")  # the last step: everything on one page
    assert f"report: {out / 'report.html'}" in result.stdout.replace("\n", "")
    for section in ("training", "evaluation", "calibration", "interpretability", "robustness", "generative-vae"):
        assert f'id="{section}"' in report
