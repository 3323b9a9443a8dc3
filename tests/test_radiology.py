"""Radiology-grade data: patient-level splits, splits.csv, manifest columns on the data handle, and the worked
example (a synthetic "X-ray" manifest trained, audited by subgroup, probed and reported)."""
import csv
import html
import importlib.util
import json

import numpy as np
import pytest
import torch
from PIL import Image

from optik.core.errors import ConfigError, DataError
from optik.data.registry import open_data
from optik.data.splits import stratified_group_split
from helpers import ROOT, run_optik


def _manifest(folder, *, n=2000, patients=300, seed=0, size=8):
    """A randomized manifest: patients with 1+ images, labels that mostly follow the patient, extra columns."""
    rng = np.random.default_rng(seed)
    (folder / "img").mkdir(parents=True)
    pid = np.concatenate([np.arange(patients), rng.integers(0, patients, n - patients)])
    risk = rng.uniform(0.05, 0.6, patients)
    rows = []
    for i, p in enumerate(pid):
        label = "sick" if rng.random() < risk[p] else "well"
        Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(folder / "img" / f"{i}.png")
        rows.append({"path": f"img/{i}.png", "label": label, "patient_id": f"p{p}",
                     "sex": "FM"[p % 2], "site": ""})
    with open(folder / "m.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return folder / "m.csv", rows


@pytest.mark.parametrize("seed", range(8))
def test_group_split_keeps_patients_whole_and_label_proportions_close(seed):
    rng = np.random.default_rng(seed)
    pid = rng.integers(0, 300, 2000)
    prevalence = rng.uniform(0.05, 0.7)
    per_patient = rng.random(300) < prevalence
    labels = np.where(rng.random(2000) < 0.85, per_patient[pid], rng.random(2000) < prevalence).astype(int)
    if seed % 2:  # three classes
        labels = np.where(rng.random(2000) < 0.2, 2, labels)
    parts = stratified_group_split(torch.tensor(labels), pid, {"test": 400, "val": 160, "train": 1.0}, seed=seed)
    assert sorted(np.concatenate([v.numpy() for v in parts.values()])) == list(range(2000))
    owners = {k: set(pid[v.numpy()]) for k, v in parts.items()}
    assert not owners["train"] & owners["test"] and not owners["train"] & owners["val"] \
        and not owners["val"] & owners["test"]
    for k, v in parts.items():
        for c in np.unique(labels):
            whole, part = (labels == c).mean(), (labels[v.numpy()] == c).mean()
            assert abs(whole - part) <= 0.05, (k, c, whole, part)
        assert abs(len(v) - {"test": 400, "val": 160, "train": 1440}[k]) <= 0.05 * len(v)


def test_group_split_is_seeded_and_refuses_too_few_groups():
    labels, groups = torch.tensor([0, 1] * 50), [f"p{i // 10}" for i in range(100)]
    a = stratified_group_split(labels, groups, {"test": 0.2, "train": 1.0}, seed=3)
    b = stratified_group_split(labels, groups, {"test": 0.2, "train": 1.0}, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(DataError, match="expected at least 3 groups"):
        stratified_group_split(labels, ["a", "b"] * 50, {"test": 0.2, "val": 0.1, "train": 1.0}, seed=0)


@pytest.mark.parametrize("stream", [False, True])
def test_manifest_group_column_splits_by_patient_and_keeps_columns(tmp_path, stream):
    manifest, rows = _manifest(tmp_path)
    data = open_data(str(manifest), group_column="patient_id", stream=stream, workers=0)
    patient = {str((tmp_path / r["path"]).resolve()): r["patient_id"] for r in rows}
    owners = {k: {patient[s] for s in v.sources} for k, v in data.splits.items()}
    assert not owners["train"] & owners["test"] and not owners["val"] & owners["test"]
    labels = np.array([r["label"] == "sick" for r in rows])
    for k, v in data.splits.items():
        sick = (v.labels == data.classes.index("sick")).float().mean().item()
        assert abs(sick - labels.mean()) <= 0.05, k
    assert data.columns == ["patient_id", "sex", "site"]
    assert data.column("test", "patient_id") == [patient[s] for s in data.splits["test"].sources]
    assert set(data.column("test", "site")) == {""}
    with pytest.raises(DataError, match="expected a column of .* got 'age'.*patient_id, sex, site"):
        data.column("test", "age")


def test_group_column_errors_name_what_is_there(tmp_path):
    manifest, _ = _manifest(tmp_path, n=40, patients=10)
    with pytest.raises(ConfigError, match="expected --group-column to name a column .* got 'patient'.*patient_id"):
        open_data(str(manifest), group_column="patient")
    with pytest.raises(DataError, match="have no 'site'"):
        open_data(str(manifest), group_column="site")
    with pytest.raises(ConfigError, match="built-in dataset 'digits'"):
        open_data("digits", group_column="patient_id")
    with pytest.raises(DataError, match="has none: subgroups and attributes are read from extra columns"):
        open_data("digits").column("test", "sex")


def test_training_writes_splits_csv_with_the_group(tmp_path):
    manifest, rows = _manifest(tmp_path / "data", n=120, patients=30)
    run_optik("train", "--data", manifest, "--group-column", "patient_id", "--model", "conv(4,k=3) relu gap fc",
              "--epochs", "1", "--out", tmp_path / "run", "--no-progress")
    with open(tmp_path / "run" / "splits.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["source", "label", "split", "patient_id"] and len(table) == 120
    by_patient = {}
    for r in table:
        by_patient.setdefault(r["patient_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_patient.values())
    truth = {str((tmp_path / "data" / r["path"]).resolve()): (r["label"], r["patient_id"]) for r in rows}
    assert all(truth[r["source"]] == (r["label"], r["patient_id"]) for r in table)
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "group_column: patient_id" in config


def test_builtin_runs_name_their_images_in_splits_csv(small_mnist_run):
    with open(small_mnist_run / "splits.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["source", "label", "split"]
    assert table[0]["source"].startswith("mnist5k[")
    assert sum(r["split"] == "test" for r in table) == 1000


def test_dicom_window_reaches_memory_and_streamed_images_alike(tmp_path):
    pytest.importorskip("pydicom")
    spec = importlib.util.spec_from_file_location("synthetic_xrays", ROOT / "examples" / "synthetic_xrays.py")
    xrays = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(xrays)
    manifest = xrays.make(tmp_path / "x", n_images=40, n_patients=10, size=16, dicom=True)
    own = open_data(str(manifest), workers=0)
    narrow = open_data(str(manifest), dicom_window=(1024.0, 400.0), workers=0)
    streamed = open_data(str(manifest), dicom_window=(1024.0, 400.0), stream=True, workers=0)
    a, b, c = (h.splits["test"].take(range(len(h.splits["test"]))) for h in (own, narrow, streamed))
    assert not torch.equal(a, b) and torch.equal(b, c)
    # the file's own window is center 1024, width 4096 over stored values rescaled by -1024 (see the example)
    stored = own.splits["test"].sources
    import pydicom
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(stored[0])
    hu = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)
    expected = np.clip(((hu - (1024 - 0.5)) / (400 - 1) + 0.5), 0, 1) * 255
    assert np.abs(b[0, 0].numpy().astype(float) - expected).max() <= 1.0


def test_worked_example_trains_audits_probes_and_reports(tmp_path):
    """The README's worked example, smaller: a synthetic X-ray manifest trained with patient-level splits,
    evaluated by sex and age band, probed for sex, and reported."""
    spec = importlib.util.spec_from_file_location("synthetic_xrays", ROOT / "examples" / "synthetic_xrays.py")
    xrays = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(xrays)
    manifest = xrays.make(tmp_path / "xr", n_images=400, n_patients=80, size=32)
    run = tmp_path / "run"
    run_optik("train", "--data", manifest, "--group-column", "patient_id", "--model", "cnn-small", "--epochs", "3",
              "--out", run, "--no-progress")
    out = run_optik("evaluate", run, "--by", "sex,age_band")
    assert "by age_band" in out.stdout and "every group at the run's threshold 0.5" in out.stdout
    m = json.loads((run / "metrics.json").read_text())
    sub = m["subgroups"]
    assert sub["columns"] == ["sex", "age_band"] and sub["positive"] == "pneumonia"
    assert {"F", "M", "gaps", "flags"} <= set(sub["sex"]) and {"18-39", "40-64", "65+"} <= set(sub["age_band"])
    # each group's counts add up to the whole test split's
    for column in ("sex", "age_band"):
        groups = [g for g in sub[column] if g not in ("gaps", "flags")]
        assert sum(sub[column][g]["n"] for g in groups) == m["n"]
        assert sum(sub[column][g]["per_class"]["pneumonia"]["tp"] for g in groups) == m["per_class"]["pneumonia"]["tp"]
    assert "thresholds_needed" not in sub
    # a target on val: the same threshold for every group, and what each group would need for it
    run_optik("evaluate", run, "--by", "sex", "--target-sensitivity", "0.8", "--per-group-threshold",
              "--bootstrap", "200")
    (variant,) = (run / "evaluations").iterdir()
    needed = json.loads((variant / "metrics.json").read_text())["subgroups"]["thresholds_needed"]["sex"]
    assert needed["target"] == {"sensitivity": 0.8} and set(needed["groups"]) == {"F", "M"}
    assert (run / "figures" / "subgroups_sex.png").is_file() and (run / "figures" / "subgroups_age_band.png").is_file()
    out = run_optik("probe", run, "--attribute", "sex", "--bootstrap", "200")
    probe = json.loads((run / "probes" / "sex.json").read_text())
    assert probe["attribute"] == "sex" and probe["values"] == ["F", "M"] and probe["verdict"] in out.stdout
    assert 0.0 <= probe["features"]["auc"] <= 1.0 and probe["n_test"] == m["n"]
    run_optik("report", run)
    page = (run / "report.html").read_text()
    assert "Subgroups" in page and "by age_band" in page and "Attribute probes" in page
    assert html.escape(probe["verdict"]) in page


def test_audit_options_fail_before_predicting(tmp_path, small_mnist_run):
    out = run_optik("evaluate", small_mnist_run, "--by", "sex", check=False)
    assert out.returncode != 0 and "subgroups and attributes are read from extra columns" in out.stderr
    out = run_optik("probe", small_mnist_run, "--attribute", "sex", check=False)
    assert out.returncode != 0 and "extra columns of a CSV manifest" in out.stderr
