"""Hostile and careless input (issue #18): what optik refuses, and that nothing is lost on the way.

Each test reproduces a report first (a deleted data folder, two trainings in one folder, a silent retrain, a
duplicate manifest row, a traceback), then checks the clear error or the safe behaviour that replaced it.
"""
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import yaml
from PIL import Image

import optik
from optik.core.errors import CheckpointError, ConfigError, DataError, OptikError, RunError
from optik.core.io import LOCK_FILE, RunLock

from helpers import ROOT, optik_cmd, run_optik

TINY = ["--model", "cnn-small", "--epochs", "1", "--batch-size", "32", "--no-progress"]


def write_images(folder, n_per_class=8, classes=("a", "b"), size=8, seed=0):
    """``folder/<class>/<i>.png``: small grey images whose brightness tells the classes apart."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            pixels = (rng.random((size, size)) * 100 + 120 * c).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")
    return folder


def snapshot(folder):
    """Every file under ``folder`` with its size and modification time: what must not change."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")
            if p.is_file()}


# ------------------------------------------------------------------------------------------------ data loss
def test_overwrite_never_deletes_a_folder_optik_did_not_make(tmp_path):
    """`optik train --data sandbox/precious/data --out sandbox/precious --overwrite` deleted the user's data and
    an unrelated notes.txt, and exited 0."""
    precious = tmp_path / "sandbox" / "precious"
    write_images(precious / "data")
    (precious / "notes.txt").write_text("three weeks of labelling notes\n")
    before = snapshot(precious)
    out = run_optik("train", "--data", precious / "data", "--out", precious, "--overwrite", *TINY, check=False)
    assert out.returncode == 2
    assert "--overwrite replaces only a run folder optik made" in out.stderr and "data/, notes.txt" in out.stderr
    assert snapshot(precious) == before


def test_overwrite_never_deletes_a_run_folder_that_holds_the_data(tmp_path):
    run = tmp_path / "run"
    run_optik("train", "--data", write_images(tmp_path / "d"), "--out", run, *TINY)
    write_images(run / "my-data")  # the user later keeps data inside the run folder
    before = snapshot(run)
    out = run_optik("train", "--data", run / "my-data", "--out", run, "--overwrite", *TINY, check=False)
    assert out.returncode == 2 and "which contains the data" in out.stderr
    assert snapshot(run) == before
    run_optik("train", "--data", tmp_path / "d", "--out", run, "--overwrite", *TINY)  # a plain run: replaced
    assert not (run / "my-data").exists() and (run / "model.safetensors").is_file()


def test_two_trainings_into_one_folder_the_second_fails_naming_the_first(tmp_path):
    """Both used to exit 0 and leave one run's model with both runs' TensorBoard files."""
    data = write_images(tmp_path / "d", n_per_class=40)
    out = tmp_path / "conc"
    first = subprocess.Popen(optik_cmd("train", "--data", data, "--out", out, "--model", "cnn-small", "--epochs",
                                       "300", "--no-progress"), cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (out / LOCK_FILE).exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert first.poll() is None, "the first training ended before the second started"
        second = run_optik("train", "--data", data, "--out", out, *TINY, check=False)
        assert second.returncode == 2 and f"is in use by process {first.pid}" in second.stderr
        again = run_optik("train", "--data", data, "--out", out, "--overwrite", *TINY, check=False)
        assert again.returncode == 2 and f"process {first.pid}" in again.stderr  # --overwrite does not break in
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
    # the owner is gone: its lock is stale, and the folder can be replaced
    assert (out / LOCK_FILE).exists()
    run_optik("train", "--data", data, "--out", out, "--overwrite", *TINY)
    assert not (out / LOCK_FILE).exists(), "released when the training ends"


def test_a_lock_from_another_host_is_respected(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere.example", "started": "now"}))
    with pytest.raises(RunError, match="in use by process 1 on elsewhere.example.*delete"):
        RunLock(folder).acquire()
    (folder / LOCK_FILE).write_text("{truncated")  # being written right now: a live claim
    with pytest.raises(RunError, match="in use by process \\(starting\\)"):
        RunLock(folder).acquire()
    os.utime(folder / LOCK_FILE, (time.time() - 60, time.time() - 60))  # a writer killed mid-write: stale
    with RunLock(folder):
        assert json.loads((folder / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert not (folder / LOCK_FILE).exists()


def test_resume_without_a_checkpoint_fails_and_says_what_can_be_done(tmp_path):
    """--resume with no last.ckpt silently retrained from scratch and rewrote best.ckpt."""
    data = write_images(tmp_path / "d")
    run = tmp_path / "run"
    run_optik("train", "--data", data, "--out", run, *TINY, "--epochs", "2")
    (run / "checkpoints" / "last.ckpt").unlink()
    best_before = snapshot(run / "checkpoints")
    out = run_optik("train", "--resume", run, "--no-progress", check=False)
    assert out.returncode == 2 and "last.ckpt does not exist" in out.stderr and "--resume-from best" in out.stderr
    assert snapshot(run / "checkpoints") == best_before
    (run / "model.safetensors").unlink()
    run_optik("train", "--resume", run, "--resume-from", "best", "--no-progress")  # asked for: continues from it
    assert (run / "model.safetensors").is_file()
    for name in ("best.ckpt", "last.ckpt"):
        (run / "checkpoints" / name).unlink(missing_ok=True)
    out = run_optik("train", "--resume", run, "--no-progress", check=False)
    assert out.returncode == 2 and "train it again with `optik train --config" in out.stderr
    hint = out.stderr.split("`")[1]  # the command it suggests works
    run_optik(*hint.split()[1:], "--no-progress")


def test_a_folder_without_config_yaml_is_not_sent_to_resume(tmp_path):
    folder = tmp_path / "not-a-run"
    folder.mkdir()
    (folder / "notes.txt").write_text("x")
    out = run_optik("evaluate", folder, check=False)
    assert out.returncode == 2 and "not a run folder optik made: it has no config.yaml" in out.stderr
    assert "--resume" not in out.stderr


# ------------------------------------------------------------------------------------------------ manifests
def _manifest(path, rows, header="path,label"):
    path.write_text(header + "\n" + "".join(r + "\n" for r in rows))
    return path


def test_a_file_listed_twice_with_two_labels_is_an_error(tmp_path):
    write_images(tmp_path / "img")
    rows = [f"img/a/{i}.png,a" for i in range(8)] + [f"img/b/{i}.png,b" for i in range(8)] + ["img/a/3.png,b"]
    with pytest.raises(DataError, match=r"(?s)lists 1 file\(s\) twice with different labels.*3.png: 'a' "
                                        r"\(m.csv line 5\) and 'b' \(m.csv line 18\)"):
        optik.load_dataset(str(_manifest(tmp_path / "m.csv", rows)))


def test_a_repeated_row_is_dropped_with_a_warning_and_never_lands_in_two_splits(tmp_path):
    write_images(tmp_path / "img", n_per_class=10)
    rows = [f"img/{c}/{i}.png,{c}" for c in "ab" for i in range(10)]
    rows += ["img/a/3.png,a", "./img/a/3.png,a", f"{tmp_path}/img/b/7.png,b"]  # same files, other spellings
    manifest = _manifest(tmp_path / "m.csv", rows)
    with pytest.warns(UserWarning, match="listed again.*dropped"):
        ds = optik.load_dataset(str(manifest))
    assert len(ds) == 20 and len(set(ds.sources)) == 20
    from optik.data import split_dataset

    for split_seed in range(4):
        splits = split_dataset(ds, val_fraction=0.2, test_fraction=0.3, seed=split_seed)
        seen = [ds.sources[i] for idx in splits.values() for i in idx.tolist()]
        assert len(seen) == len(set(seen)) == 20


def test_manifest_records_its_hash_and_how_many_images_live_outside_its_folder(tmp_path):
    import hashlib

    write_images(tmp_path / "elsewhere", n_per_class=10)
    (tmp_path / "project").mkdir()
    rows = [f"../elsewhere/{c}/{i}.png,{c}" for c in "ab" for i in range(5)]
    rows += [f"{tmp_path}/elsewhere/{c}/{i}.png,{c}" for c in "ab" for i in range(5, 10)]
    manifest = _manifest(tmp_path / "project" / "m.csv", rows)
    run = tmp_path / "run"
    run_optik("train", "--data", manifest, "--out", run, *TINY)
    data = yaml.safe_load((run / "config.yaml").read_text())["data"]
    assert data["manifest_sha256"] == hashlib.sha256(manifest.read_bytes()).hexdigest()
    assert data["outside_manifest_folder"] == 20
    html = optik.report(run).read_text()
    assert "images outside the manifest&#x27;s folder" in html or "images outside the manifest's folder" in html


@pytest.mark.parametrize("row,match", [("img/a/0.png", "line 2: no label"), ("img/a/0.png,", "line 2: no label"),
                                       (",a", "line 2: no path"), ("img/a/0.png,a,extra", "more values")])
def test_malformed_manifest_rows_name_the_line(tmp_path, row, match):
    """A row without its label ended in AttributeError: 'NoneType' object has no attribute 'strip'."""
    write_images(tmp_path / "img")
    manifest = _manifest(tmp_path / "m.csv", [row, "img/b/0.png,b"])
    with pytest.raises(DataError, match=match):
        optik.load_dataset(str(manifest))


def test_what_is_left_out_is_named_for_what_it_is(tmp_path):
    """A broken symlink class folder was dropped silently; a FIFO was reported as 'does not exist'."""
    root = write_images(tmp_path / "tree", classes=("a", "b"))
    (root / "c").symlink_to(tmp_path / "gone")
    os.mkfifo(root / "a" / "pipe.png")
    with pytest.warns(UserWarning) as caught:
        ds = optik.load_dataset(str(root))
    text = "\n".join(str(w.message) for w in caught)
    assert "c: is a broken symbolic link" in text and "expected a class folder" in text
    assert "pipe.png: is a FIFO (a named pipe), not a file" in text
    assert ds.classes == ["a", "b"]
    manifest = _manifest(tmp_path / "m.csv", ["tree/a/0.png,a", "tree/a/pipe.png,a", "tree/b/0.png,b"])
    with pytest.warns(UserWarning, match="pipe.png.*is a FIFO"):
        optik.load_dataset(str(manifest))
    with pytest.raises(DataError, match="which is a file"):
        from optik.data.files import load_folder

        load_folder(manifest)


# ------------------------------------------------------------------------------------------------ tracebacks
@pytest.mark.parametrize("flag,value,match", [("--lr", "inf", "expected a finite number"),
                                              ("--lr", "1e300", "expected at most 10"),
                                              ("--epochs", "1e9", "expected an integer"),
                                              ("--batch-size", "99999999999", "expected at most")])
def test_absurd_hyperparameters_are_refused_before_anything_runs(tmp_path, flag, value, match):
    out = run_optik("train", "--data", "digits", "--out", tmp_path / "r", flag, value, "--no-progress", check=False)
    assert out.returncode == 2 and match in out.stderr and not (tmp_path / "r").exists()


def test_a_diverging_loss_stops_training_naming_the_step(tmp_path):
    """--lr inf trained and then died in TensorBoard's histogram, advising --resume."""
    out = run_optik("train", "--data", "digits", "--model", "conv(8) relu fc(64) relu fc", "--lr", "10",
                    "--weight-decay", "0", "--schedule", "constant", "--epochs", "3", "--out", tmp_path / "r",
                    "--no-progress", check=False)
    assert out.returncode == 2
    assert "the loss became NaN or infinite at step" in out.stderr and "try a lower --lr than 10" in out.stderr
    assert "Continue with: optik train --resume" not in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "r" / LOCK_FILE).exists()


def test_many_classes_evaluate_in_memory_linear_in_the_classes():
    """10,000 classes of one image each tried to allocate 1.46 TiB (classes^2 x resamples). The report keeps
    per-class counts, skips the K x K matrix and the per-class intervals with flags, and stays small."""
    import tracemalloc

    from optik.evaluation.evaluate import EvalOptions, full_evaluation

    k, n = 10_000, 2_000
    rng = np.random.default_rng(0)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)).astype(np.float32)
    logits[np.arange(n), y] += 3 * (rng.random(n) < 0.5)  # about half right
    tracemalloc.start()
    ev = full_evaluation(logits, y, [str(c) for c in range(k)], EvalOptions(n_boot=2000))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    r = ev.report
    assert peak < 1.5e9, f"peak {peak / 1e9:.2f} GB"
    assert r["confusion_matrix"] is None and r["intervals"]["per_class"] == {}
    assert r["intervals"]["accuracy"]["low"] < r["accuracy"] < r["intervals"]["accuracy"]["high"]
    assert any("confusion matrix is not kept" in f for f in r["flags"])
    assert any("per-class intervals were not computed" in f for f in r["flags"])
    c = r["per_class"][str(y[0])]
    assert c["tp"] + c["fn"] == (y == y[0]).sum()


def test_many_classes_train_and_evaluate_end_to_end(tmp_path):
    """2,500 classes of 2 images: more classes than a K x K matrix is kept for (validation counts per class)."""
    from optik.evaluation.metrics import MAX_MATRIX_CLASSES

    classes = [f"c{i:04d}" for i in range(2500)]
    assert len(classes) > MAX_MATRIX_CLASSES
    write_images(tmp_path / "d", n_per_class=2, classes=classes, size=8)
    result = optik.train(data=str(tmp_path / "d"), model="cnn-small", epochs=1, batch_size=256, augment="none",
                         test_fraction=0.5, out=tmp_path / "r", progress=False)
    m = json.loads((tmp_path / "r" / "metrics.json").read_text())
    assert m["confusion_matrix"] is None and len(m["per_class"]) == 2500 and "n" in m
    assert not (tmp_path / "r" / "figures" / "confusion_matrix.png").exists()
    assert result.metrics["intervals"]["per_class"] == {}
    report = optik.evaluate(tmp_path / "r", n_boot=0)
    assert report["confusion_matrix"] is None and "intervals" not in report


@pytest.mark.parametrize("field,value,match", [("input_size", [60000, 60000], "at most 16384 x 16384"),
                                               ("arch", {"spec": "conv(8) fc(100000000000)"}, "parameters")])
def test_tampered_model_json_sizes_are_refused_by_their_numbers(tmp_path, field, value, match):
    run = tmp_path / "run"
    run_optik("train", "--data", write_images(tmp_path / "d"), "--out", run, *TINY)
    meta = json.loads((run / "model.json").read_text())
    meta[field] = value
    if field == "input_size":
        meta.pop("net_input_size", None)
    (run / "model.json").write_text(json.dumps(meta))
    with pytest.raises((ConfigError, CheckpointError), match=match):
        optik.load(run)


def test_a_huge_config_file_is_refused_before_parsing(tmp_path):
    """A 50 MB YAML list parsed for 7.4 minutes, then printed a 50 MB error line."""
    big = tmp_path / "big.yaml"
    with open(big, "w") as f:
        f.write("epochs: [" + ", ".join(["1"] * 400_000) + "]\n")
    start = time.perf_counter()
    out = run_optik("train", "--config", big, "--out", tmp_path / "r", check=False)
    assert time.perf_counter() - start < 10
    assert out.returncode == 2 and "optik reads configs up to 1,000,000 bytes" in out.stderr
    assert len(out.stderr) < 1000
    small = tmp_path / "long.yaml"
    small.write_text("epochs: '" + "x" * 200_000 + "'\n")
    out = run_optik("train", "--config", small, "--out", tmp_path / "r", check=False)
    assert out.returncode == 2 and "(200,002 characters)" in out.stderr and len(out.stderr) < 1000


def test_one_pixel_limit_everywhere_and_eps_beyond_the_pixel_range_warns(tmp_path):
    from optik.core.images import MAX_IMAGE_PIXELS
    from optik.serve.uploads import MAX_PIXELS
    from test_serve import _png_bomb

    assert MAX_PIXELS == MAX_IMAGE_PIXELS == 50_000_000
    root = write_images(tmp_path / "d")
    _png_bomb(root / "a" / "huge.png", 8000, 8000)  # 64 MP: PIL itself would only warn
    with pytest.warns(UserWarning, match="huge.png: 8000 x 8000 pixels .* over optik's limit of 50 MP"):
        optik.load_dataset(str(root))
    run = tmp_path / "run"
    with pytest.warns(UserWarning, match="huge.png"):
        run_optik("train", "--data", root, "--out", run, *TINY)
        predicted = optik.predict(run, [root / "a" / "huge.png", root / "a" / "0.png"])
    assert "over optik's limit" in predicted[0]["error"] and "top_k" in predicted[1]
    with pytest.warns(UserWarning, match="eps 2 \\(linf\\) is larger than the whole range"), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="skipped 1 file")  # the run's data, loaded again
        optik.attack(run, method="fgsm", eps=[0, 2.0], n=4)


# ------------------------------------------------------------------------------------------------ fuzz
def _random_value(rng):
    kind = rng.integers(9)
    return [None, float("nan"), float("inf"), -1, 10 ** int(rng.integers(3, 30)), "x" * int(rng.integers(1, 5000)),
            [1, "a"], True, float(rng.normal() * 10 ** rng.integers(0, 6))][kind]


def test_fuzzed_configs_end_in_a_config_or_a_one_line_error():
    """Hundreds of configs with random types and huge or non-finite values: each is accepted or refused with
    an OptikError whose message is one line of reasonable length; nothing else escapes."""
    from optik.training.config import GANConfig, TrainConfig, VAEConfig
    import dataclasses

    rng = np.random.default_rng(0)
    outcomes = {"ok": 0, "refused": 0}
    for schema in (TrainConfig, GANConfig, VAEConfig):
        names = [f.name for f in dataclasses.fields(schema)]
        for _ in range(150):
            values = {str(rng.choice(names)): _random_value(rng) for _ in range(int(rng.integers(1, 4)))}
            try:
                from optik.core.config import resolve_config

                resolve_config(schema, values)
                outcomes["ok"] += 1
            except OptikError as e:
                message = str(e)
                assert "\n" not in message and len(message) < 600, message[:300]
                outcomes["refused"] += 1
    assert outcomes["refused"] > 300 and outcomes["ok"] > 10, outcomes


def _random_manifest(rng, folder, files):
    """A CSV that is sound but untidy (repeats, missing files, absolute paths, paths out of the folder) one time
    in two, else anything: malformed rows, odd labels, NUL bytes, names too long, a wrong header."""
    tidy = rng.random() < 0.5
    rows = []
    for _ in range(int(rng.integers(0, 16))):
        f = files[int(rng.integers(len(files)))]
        label = str(rng.choice(["a", "b", "c"] if tidy else ["a", "b", "c", "", " ", "a,b", "é", "x" * 300]))
        kinds = [f"{f},{label}", f"{folder}/{f},{label}", f"missing.png,{label}", f"../data/{f},{label}",
                 f"{f},{label}"] if tidy else \
                [f"{f}", f",{label}", f"{f},{label},extra", f"../../etc/passwd,{label}", f"\x00{f},{label}",
                 f"{'x' * 300}.png,{label}", f"{f},{label}", f"{f},a"]
        rows.append(kinds[int(rng.integers(len(kinds)))])
    header = "path,label" if tidy else str(rng.choice(["path,label", "label,path", "path", "file,label",
                                                         "path,label,patient", ""]))
    return header + "\n" + "\n".join(rows) + "\n"


def test_fuzzed_manifests_train_or_fail_with_one_line_and_touch_nothing_else(tmp_path):
    """A few hundred random manifests (malformed rows, odd labels, missing or escaping paths, repeats): loading
    each ends in a dataset or an OptikError of one line; a sample of those that load are trained with the CLI,
    which exits 0 or 2 with one error line; no file outside the run folders changes."""
    data = tmp_path / "data"
    write_images(data / "img", n_per_class=4, classes=("a", "b", "c"))
    files = [str(p.relative_to(data)) for p in sorted(data.rglob("*.png"))]
    before = snapshot(data)
    rng = np.random.default_rng(1)
    loaded = []
    for i in range(300):
        manifest = data / f"m{i}.csv"
        manifest.write_bytes(_random_manifest(rng, data, files).encode("utf-8", "surrogatepass"))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                optik.load_dataset(str(manifest))
                loaded.append(manifest)
            except OptikError as e:
                assert "\n" not in str(e).split(":\n")[0] and len(str(e).splitlines()[0]) < 600
    assert 10 < len(loaded) < 300
    for manifest in loaded[:6]:
        run = tmp_path / "runs" / manifest.stem
        out = run_optik("train", "--data", manifest, "--out", run, *TINY, check=False)
        assert out.returncode in (0, 2), out.stderr[-2000:]
        if out.returncode == 2:
            assert len([ln for ln in out.stderr.splitlines() if "error:" in ln]) == 1 and "Traceback" not in out.stderr
    after = snapshot(data)
    assert {k: v for k, v in after.items() if not k.startswith("m")} == \
        {k: v for k, v in before.items() if not k.startswith("m")}
