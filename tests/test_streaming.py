"""Data as handles (issue #19): a folder streamed from its files in worker processes is the same data, in the same
order, as the folder decoded into memory; so training gives the same weights, and every verb gives the same
numbers, while memory stays bounded."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import optik
from optik.core.errors import ConfigError, DataError
from optik.data.handles import FileSplit, MemorySplit, channel_stats
from optik.data.registry import open_data

from helpers import run_optik


def write_folder(root, *, n=24, classes=("cat", "dog", "emu"), size=(20, 24), seed=0, grey_every=0):
    """``root/<class>/<i>.png``: RGB images of two sizes (most of them ``size``) whose colour tells the classes
    apart; with ``grey_every`` every so many images are grey (they are repeated to RGB)."""
    rng = np.random.default_rng(seed)
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = size if i % 5 else (size[0] + 6, size[1] + 2)
            pixels = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
            pixels[..., c] += 120
            image = Image.fromarray(pixels)
            if grey_every and i % grey_every == 0:
                image = image.convert("L")
            image.save(root / name / f"{i:03d}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return write_folder(tmp_path_factory.mktemp("stream") / "data", grey_every=7)


def test_streamed_and_in_memory_splits_hold_the_same_images_in_the_same_order(folder):
    memory, files = open_data(str(folder)), open_data(str(folder), stream=True, workers=2)
    assert memory.source == "memory" and files.source == "files"
    assert (memory.classes, memory.channels, memory.image_size) == (files.classes, 3, (20, 24)) == \
        (files.classes, files.channels, files.image_size)
    for name in ("train", "val", "test"):
        m, f = memory.splits[name], files.splits[name]
        assert isinstance(m, MemorySplit) and isinstance(f, FileSplit)
        assert m.sources == f.sources and torch.equal(m.labels, f.labels)
        assert torch.equal(m.take(range(len(m))), f.take(range(len(f))))
        for a, b in zip(m.batches(16, shuffle=True, seed=3, drop_last=True), f.batches(16, shuffle=True, seed=3,
                                                                                   drop_last=True, workers=2)):
            assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[0].dtype == torch.uint8
    np.testing.assert_allclose(channel_stats(memory.splits["train"]), channel_stats(files.splits["train"]),
                               rtol=0, atol=1e-12)


def test_memory_or_streaming_is_chosen_by_size_and_said(folder, tmp_path):
    assert open_data(str(folder), max_memory_gb=1).source == "memory"
    assert open_data(str(folder), max_memory_gb=1e-6).source == "files"  # 72 images of 3 x 20 x 24 do not fit
    out = run_optik("train", "--data", folder, "--max-memory-gb", "0.000001", "--model", "cnn-small", "--epochs",
                    "1", "--out", tmp_path / "r", "--no-progress")
    assert "streamed" in out.stderr
    assert json.loads(json.dumps(optik.run_info(tmp_path / "r")["config"]["data"]))["source"] == "files"


def test_training_streamed_gives_the_weights_of_training_in_memory(folder, tmp_path):
    """The same images in the same order, the same float conversion on the device: bit-identical weights, and the
    same test report."""
    common = dict(data=str(folder), model="cnn-small", epochs=2, batch_size=16, progress=False)
    optik.train(out=tmp_path / "memory", **common)
    optik.train(out=tmp_path / "files", stream=True, workers=2, **common)
    a, b = load_file(str(tmp_path / "memory" / "model.safetensors")), load_file(str(tmp_path / "files" /
                                                                                   "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ma, mb = (json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("memory", "files"))
    assert ma["confusion_matrix"] == mb["confusion_matrix"] and ma["calibration"] == mb["calibration"]


def test_every_verb_works_on_a_streamed_run_with_the_in_memory_numbers(folder, tmp_path):
    run = tmp_path / "run"
    optik.train(data=str(folder), model="cnn-small", epochs=2, batch_size=16, stream=True, workers=2, out=run,
                progress=False)
    from optik.api import split_logits
    from optik.runs import Run

    opened = Run.open(run)
    model = opened.model()
    streamed = split_logits(model, opened.split("test"))
    in_memory = split_logits(model, opened.split("test", stream=False))
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(streamed[0]), 1),
                               torch.softmax(torch.from_numpy(in_memory[0]), 1), rtol=0, atol=1e-6)
    report = optik.evaluate(run, n_boot=200)
    assert report["n"] == len(opened.split("test")) and (run / "figures" / "mistakes.png").exists() \
        or report["accuracy"] == 1.0
    robustness = optik.attack(run, method="fgsm", eps=[0, 0.1], n=10)
    assert robustness["n"] == 10
    assert optik.report(run).is_file()
    predicted = optik.predict(run, [folder / "cat" / "000.png"])
    assert predicted[0]["top_k"][0]["class"] in ("cat", "dog", "emu")


def test_an_unreadable_file_found_while_streaming_is_skipped_counted_and_named(folder, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(folder, data)
    good = (data / "dog" / "001.png").read_bytes()
    (data / "dog" / "001.png").write_bytes(good[: len(good) // 2])  # truncated: its header still reads
    with pytest.warns(UserWarning, match=r"(?s)skipped 1 unreadable file\(s\) while streaming.*dog/001.png"):
        result = optik.train(data=str(data), model="cnn-small", epochs=1, batch_size=16, stream=True, workers=0,
                             out=tmp_path / "r", progress=False)
    assert result.metrics is not None
    with pytest.raises(DataError, match="strict mode.*001.png"):
        optik.train(data=str(data), model="cnn-small", epochs=1, batch_size=16, stream=True, workers=0, strict=True,
                    out=tmp_path / "strict", progress=False)


@pytest.fixture(scope="module")
def shards(folder, tmp_path_factory):
    """The folder prepared as LitData shards of 20 x 20 images (the comparisons below resize the folder to 20 too)."""
    out = tmp_path_factory.mktemp("shards") / "prepared"
    optik.prepare(str(folder), out=out, image_size=20, workers=1, progress=False)
    return out


def test_prepared_shards_hold_the_folders_images_and_train_to_the_same_weights(folder, shards, tmp_path):
    from optik.data.shards import ShardSplit

    prepared, memory = open_data(str(shards)), open_data(str(folder), image_size=20)
    assert prepared.source == "shards" and prepared.classes == memory.classes and prepared.image_size == (20, 20)
    for name in ("train", "val", "test"):
        p, m = prepared.splits[name], memory.splits[name]
        assert isinstance(p, ShardSplit) and p.sources == m.sources and torch.equal(p.labels, m.labels)
        assert torch.equal(p.take(range(len(p))), m.take(range(len(m))))
    common = dict(model="cnn-small", epochs=2, batch_size=8, progress=False)
    optik.train(data=str(shards), workers=1, out=tmp_path / "shards", **common)
    optik.train(data=str(folder), image_size=20, out=tmp_path / "memory", **common)
    a, b = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("shards", "memory"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    report = optik.evaluate(tmp_path / "shards", n_boot=100)  # a verb on a run trained from shards
    assert report["n"] == len(prepared.splits["test"])


def test_prepare_resumes_and_refuses_a_foreign_folder(folder, shards, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    train_index = (copy / "train" / "index.json").stat().st_mtime_ns
    shutil.rmtree(copy / "val")  # as if interrupted before the validation split was written
    optik.prepare(str(folder), out=copy, image_size=20, workers=1, progress=False)
    assert (copy / "val" / "index.json").is_file() and (copy / "train" / "index.json").stat().st_mtime_ns == train_index
    assert torch.equal(open_data(str(copy)).splits["val"].labels, open_data(str(shards)).splits["val"].labels)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="holds other files"):
        optik.prepare(str(folder), out=tmp_path / "other", image_size=20, workers=1, progress=False)


@pytest.mark.parametrize("source", ["files", "shards"])
def test_streamed_data_parallel_ranks_see_disjoint_equal_shares(folder, shards, tmp_path, source):
    out = tmp_path / "ddp"
    data = ["--data", folder, "--stream"] if source == "files" else ["--data", shards]
    run_optik("train", *data, "--model", "cnn-small", "--epochs", "1", "--batch-size", "8",
              "--workers", "1", "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu", "--log-shards",
              "--no-progress", "--out", out, isolated=True)
    ranks = [json.loads((out / "shards" / f"rank{r}.json").read_text()) for r in (0, 1)]
    seen = [set(r["train_indices_epoch0"]) for r in ranks]
    assert seen[0] and not seen[0] & seen[1] and len(seen[0]) == len(seen[1])
    n_train = len(open_data(str(folder)).splits["train"])
    assert len(seen[0] | seen[1]) >= n_train - 2 * 8  # all but the dropped last batches
    assert ranks[0]["val_accuracy"] == ranks[1]["val_accuracy"]


@pytest.mark.parametrize("source", ["files", "shards"])
def test_resume_after_sigkill_mid_epoch_equals_uninterrupted(folder, shards, tmp_path, source):
    """`optik train --stream --checkpoint-every 5` (or from prepared shards), killed between two epoch ends,
    resumed: bit-identical weights to the run that was never interrupted (the checkpoint holds the data position
    and the random state)."""
    import os
    import signal

    from helpers import start_training_until_checkpoint

    data = folder if source == "files" else shards  # 72 images: 25 steps of 2 in an epoch
    args = ["--data", data, "--model", "cnn-small", "--epochs", "2", "--batch-size", "2", "--workers", "1",
            "--checkpoint-every", "5", "--seed", "3", "--no-progress", *(["--stream"] if source == "files" else [])]
    run_optik("train", *args, "--out", tmp_path / "whole")

    killed = tmp_path / "killed"
    proc = start_training_until_checkpoint(*args, out=killed, poll=0.002)
    last = killed / "checkpoints" / "last.ckpt"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = torch.load(last, weights_only=True)
    done = state["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]
    steps = len(open_data(str(data)).splits["train"]) // 2
    assert 0 < done < steps and state["epoch"] == 0, f"killed at batch {done} of {steps}, epoch {state['epoch']}"
    assert not (killed / "model.safetensors").exists()

    run_optik("train", "--resume", killed, "--no-progress")
    a, b = (load_file(str(tmp_path / r / "model.safetensors")) for r in ("whole", "killed"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("launcher", [{"WORLD_SIZE": "2", "RANK": "0", "TORCHELASTIC_RUN_ID": "x"},
                                      {"SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "0"}])
def test_a_run_launched_by_torchrun_or_srun_needs_its_folder_named(launcher, monkeypatch, tmp_path):
    """Every rank of `torchrun` / `srun` starts optik on its own: a folder named after the time would differ
    between them, so --out is required, on rank 0 as on the others, before anything is written."""
    monkeypatch.chdir(tmp_path)
    for k, v in launcher.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(ConfigError, match="expected --out when launched by"):
        optik.train(data="digits", model="cnn-small", epochs=1, progress=False)
    assert not (tmp_path / "runs").exists()


def test_training_in_process_leaves_the_environment_as_it_found_it(tmp_path):
    import os

    before = dict(os.environ)
    optik.train(data="digits", model="cnn-small", epochs=1, out=tmp_path / "run", progress=False)
    assert dict(os.environ) == before


def test_evaluate_and_attack_default_to_the_device_the_run_trained_on(caplog):
    import logging

    from optik.api import make_config, run_device

    on_gpu = make_config(data="digits", accelerator="gpu")
    with caplog.at_level(logging.INFO, logger="optik"):
        got = run_device(on_gpu)
    if torch.cuda.is_available():
        assert got.type == "cuda"
    else:
        assert got == torch.device("cpu") and "which this machine does not have" in caplog.text
    assert run_device(make_config(data="digits", accelerator="cpu")) == torch.device("cpu")
    assert run_device(on_gpu, "cpu") == torch.device("cpu")
    with pytest.raises(ConfigError, match="expected a device this machine has, got 'cuda:99'"):
        run_device(on_gpu, "cuda:99")


@pytest.mark.filterwarnings("ignore:FID from")
@pytest.mark.parametrize("kind", ["vae", "gan"])
def test_generative_runs_stream_with_the_in_memory_weights_and_numbers(folder, tmp_path, kind):
    """A GAN or VAE trained on a streamed folder sees the same batches as one trained in memory: the same weights;
    sample quality and the test -ELBO are computed over streamed splits with the in-memory numbers."""
    features = tmp_path / "features"
    optik.train(data=str(folder), model="cnn-small", image_size=16, epochs=1, out=features, progress=False)
    train = optik.train_vae if kind == "vae" else optik.train_gan
    common = dict(data=str(folder), image_size=16, epochs=2, batch_size=8, quality_every=1, quality_samples=20,
                  features=str(features), seed=1, progress=False)
    memory = train(out=tmp_path / "memory", **common)
    streamed = train(out=tmp_path / "files", stream=True, workers=2, **common)
    assert optik.run_info(streamed.run_dir)["config"]["data"]["source"] == "files"
    a, b = (load_file(str(r.run_dir / "model.safetensors")) for r in (memory, streamed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for key in ("fid", "kid_mean", "precision", "recall"):
        assert streamed.metrics["test"][key] == pytest.approx(memory.metrics["test"][key], rel=1e-6, abs=1e-9)
    assert streamed.metrics["fid_floor_train_vs_test"] == pytest.approx(memory.metrics["fid_floor_train_vs_test"],
                                                                        rel=1e-6)
    if kind == "vae":
        assert streamed.metrics["test_neg_elbo"]["neg_elbo"] == pytest.approx(
            memory.metrics["test_neg_elbo"]["neg_elbo"], rel=1e-6)
        assert optik.interpolate(streamed.run_dir, out=tmp_path / "path.png", rows=2, steps=3).is_file()
    again = optik.quality(streamed.run_dir, n=10)
    assert again["n_real"] == 10 and again["fid"] == pytest.approx(optik.quality(memory.run_dir, n=10)["fid"],
                                                                  rel=1e-6)
