"""Training end to end: run folder, resume after SIGKILL, data parallel on CPU, and what the run holds."""
import json
import os
import signal
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

import optik
from optik.core.errors import ConfigError, RunError
from optik.data import load_dataset, split_dataset

from helpers import run_optik, start_training_until_checkpoint

FAST = ["--data", "mnist5k", "--model", "cnn-small", "--batch-size", "128", "--no-progress"]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A short real training on mnist5k through the Python API (shared by the tests below)."""
    out = tmp_path_factory.mktemp("runs") / "small"
    return optik.train(data="mnist5k", model="cnn-small", epochs=3, out=out, progress=False)


def test_run_folder_has_everything(small_run):
    run = small_run.run_dir
    for name in ("config.yaml", "model.safetensors", "model.json", "metrics.json", "checkpoints/last.ckpt",
                 "checkpoints/best.ckpt", "figures/confusion_matrix.png"):
        assert (run / name).is_file(), name
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["config"]["epochs"] == 3 and cfg["data"]["splits"] == {"test": 1000, "val": 400, "train": 3600}
    assert cfg["torch"] and cfg["created"]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == 1000 and metrics["accuracy"] > 0.8  # three epochs of a small CNN on real digits
    assert set(metrics["per_class"]["3"]) >= {"tp", "fp", "tn", "fn", "sensitivity", "specificity", "precision",
                                                "npv", "f1"}
    assert load_file(str(run / "model.safetensors"))  # plain tensors, no pickle


def test_tensorboard_has_scalars_images_histograms(small_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(small_run.run_dir / "tensorboard"), size_guidance={"images": 0, "histograms": 0})
    acc.Reload()
    tags = acc.Tags()
    assert {"train/loss", "val/acc", "val/loss"} <= set(tags["scalars"])
    assert "val/confusion_matrix" in tags["images"]
    assert any(t.startswith("weights/") for t in tags["histograms"])
    assert len(acc.Scalars("val/acc")) == 3


def test_evaluate_matches_training_metrics_and_sklearn(small_run):
    from sklearn.metrics import accuracy_score, confusion_matrix

    report = optik.evaluate(small_run.run_dir)
    assert report["confusion_matrix"] == small_run.metrics["confusion_matrix"]
    model = optik.load(small_run.run_dir)
    ds = load_dataset("mnist5k")
    test = split_dataset(ds, val_fraction=0.1, test_fraction=0.2, seed=0)["test"]
    with torch.no_grad():
        pred = model(ds.images[test].float() / 255).argmax(1).numpy()
    y = ds.labels[test].numpy()
    assert report["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert report["confusion_matrix"] == confusion_matrix(y, pred, labels=list(range(10))).tolist()


def test_options_that_do_not_apply_to_the_run_are_refused(small_run, tmp_path):
    from PIL import Image

    from optik.core.errors import DataError
    from optik.robustness import PGD

    with pytest.raises(ConfigError, match="--threshold applies to binary tasks; this one has 10 classes"):
        optik.evaluate(small_run.run_dir, threshold=0.3)
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="expected a device this machine has, got 'cuda'"):
            optik.attack(small_run.run_dir, method="fgsm", eps=0.1, n=10, device="cuda")
    with pytest.raises(ConfigError, match="expected a device such as"):
        optik.load(small_run.run_dir, device="gpu")
    with pytest.raises(ConfigError, match="top_k >= 1"):
        optik.predict(small_run.run_dir, [tmp_path], top_k=0)
    Image.fromarray(load_dataset("mnist5k").images[0, 0].numpy()).save(tmp_path / "digit.png")
    one = optik.predict(small_run.run_dir, str(tmp_path / "digit.png"), top_k=2)  # one path, not its characters
    assert len(one) == 1 and len(one[0]["top_k"]) == 2
    report = optik.attack(small_run.run_dir, method="fgsm", eps=0.1, n=10)  # one eps, not a list of one
    assert [row["eps"] for row in report["per_eps"]] == [0.1] and report["n"] == 10
    with pytest.raises(DataError, match=r"expected labels in \[0, 10\), got values from 0 to 12"):
        PGD(small_run.model, eps=0.1, steps=2)(torch.rand(2, 1, 28, 28), torch.tensor([0, 12]))


def test_new_run_never_overwrites(small_run):
    with pytest.raises(RunError, match="already exists"):
        optik.train(data="digits", out=small_run.run_dir, epochs=1, progress=False)


def test_resume_rejects_changed_training_options(small_run):
    with pytest.raises(ConfigError, match="cannot change \\['lr'\\]"):
        optik.train(resume=small_run.run_dir, lr=0.5, progress=False)


def _weights(run):
    return load_file(str(run / "model.safetensors"))


def test_resume_after_sigkill_equals_uninterrupted(tmp_path):
    args = [*FAST, "--epochs", "4", "--seed", "5"]
    run_optik("train", *args, "--out", tmp_path / "whole")

    killed = tmp_path / "killed"
    proc = start_training_until_checkpoint(*args, out=killed)
    last = killed / "checkpoints" / "last.ckpt"
    time.sleep(1.0)  # let it get into the next epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (killed / "model.safetensors").exists(), "the run finished before it could be killed"
    epoch = torch.load(last, weights_only=True)["epoch"]  # whole and readable (a killed writer leaves only a .tmp)
    assert epoch < 3

    run_optik("train", "--resume", killed, "--no-progress")
    whole, resumed = _weights(tmp_path / "whole"), _weights(killed)
    assert whole.keys() == resumed.keys()
    for k in whole:
        assert torch.equal(whole[k], resumed[k]), k
    a = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert a["confusion_matrix"] == b["confusion_matrix"] and a["accuracy"] == b["accuracy"]


def test_ddp_two_processes_on_cpu(tmp_path):
    out = tmp_path / "ddp"
    run_optik("train", "--data", "digits", "--model", "cnn-small", "--epochs", "2", "--batch-size", "32",
              "--devices", "2", "--strategy", "ddp", "--accelerator", "cpu", "--log-shards", "--no-progress",
              "--out", out, isolated=True)  # DDP relaunches its own command line: not pytest's
    ranks = [json.loads((out / "shards" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    seen = [set(r["train_indices_epoch0"]) for r in ranks]
    assert seen[0] and seen[1] and not seen[0] & seen[1], "ranks must see disjoint shards"
    assert len(seen[0]) == len(seen[1])
    ds = load_dataset("digits")
    splits = split_dataset(ds, val_fraction=0.1, test_fraction=0.2, seed=0)
    assert seen[0] | seen[1] <= set(range(len(splits["train"])))  # positions in the training split
    assert len(seen[0] | seen[1]) >= len(splits["train"]) - 2 * 32  # all but the dropped last batches

    # validation metrics were reduced over both ranks: both saw the whole val split and agree
    n_val = len(splits["val"])
    assert ranks[0]["val_n"] == ranks[1]["val_n"] == n_val
    assert ranks[0]["val_accuracy"] == ranks[1]["val_accuracy"]
    # ... and equal a single-process evaluation of the last weights on the whole val split
    from optik.training.trainer import load_task_weights

    model = optik.load(out)
    load_task_weights(model, out / "checkpoints" / "last.ckpt")
    with torch.no_grad():
        pred = model.eval()(ds.images[splits["val"]].float() / 255).argmax(1)
    assert ranks[0]["val_accuracy"] == pytest.approx((pred == ds.labels[splits["val"]]).double().mean().item())


def test_mixed_precision_early_stopping_and_keep_best(tmp_path):
    result = optik.train(data="digits", model="cnn-small", epochs=3, precision="bf16-mixed", early_stopping=1,
                         keep="best", out=tmp_path / "bf16", progress=False)
    assert result.metrics["n"] == round(0.2 * 1797) and 0.0 <= result.metrics["accuracy"] <= 1.0
    best = torch.load(tmp_path / "bf16" / "checkpoints" / "best.ckpt", weights_only=True)["state_dict"]
    saved = load_file(str(tmp_path / "bf16" / "model.safetensors"))
    for k, v in saved.items():  # --keep best: the saved model is the best checkpoint's weights
        assert torch.equal(v, best["model." + k].contiguous()), k


def test_last_checkpoint_is_the_last_epoch_even_without_a_new_best(tmp_path):
    """A linear model at a negligible learning rate: validation accuracy never improves after epoch 0, so only
    that epoch is a best; last.ckpt must still hold the last epoch (resume continues from there)."""
    run = tmp_path / "flat"
    optik.train(data="digits", model="flatten fc", epochs=3, lr=1e-12, augment="none", out=run, progress=False)
    best = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert best["epoch"] == 0, "the premise: no later epoch beat the first"
    assert last["epoch"] == 2 and last["global_step"] == 3 * best["global_step"]
    saved = load_file(str(run / "model.safetensors"))
    for k, v in saved.items():
        assert torch.equal(v, last["state_dict"]["model." + k].contiguous()), k


@pytest.mark.parametrize("keep", ["last", "best"])
def test_weight_average_is_validated_and_saved(tmp_path, keep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / keep
    result = optik.train(data="digits", model="cnn-small", epochs=3, ema_half_life=500, keep=keep, out=run,
                         progress=False)
    kept = torch.load(run / "checkpoints" / f"{keep}.ckpt", weights_only=True)
    ckpt = kept["state_dict"]
    saved = load_file(str(run / "model.safetensors"))
    for k, v in saved.items():
        assert torch.equal(v, ckpt["ema.average." + k].contiguous()), k
    assert any(not torch.equal(v, ckpt["model." + k].contiguous()) for k, v in saved.items() if v.is_floating_point())

    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    ds = load_dataset("digits")
    val = split_dataset(ds, val_fraction=0.1, test_fraction=0.2, seed=0)["val"]
    with torch.no_grad():
        pred = result.model.eval()(ds.images[val].float() / 255).argmax(1)
    logged = {e.step: e.value for e in acc.Scalars("val/acc")}
    assert logged[kept["global_step"] - 1] == pytest.approx((pred == ds.labels[val]).double().mean().item())


class _Payload:
    """Unpickling this would run code: a checkpoint holding it must be refused, not executed."""

    def __reduce__(self):
        return (os.system, ("touch /tmp/optik-pwned",))


def test_resume_refuses_a_checkpoint_that_is_not_plain_weights(small_run, tmp_path):
    import shutil

    from optik.core.errors import CheckpointError

    run = tmp_path / "copy"
    shutil.copytree(small_run.run_dir, run)
    for name in ("model.safetensors", "metrics.json"):
        (run / name).unlink()
    torch.save({"state_dict": {}, "evil": _Payload()}, run / "checkpoints" / "last.ckpt")
    with pytest.raises(CheckpointError, match="refusing to load"):
        optik.train(resume=run, progress=False)
    assert not os.path.exists("/tmp/optik-pwned")


def test_tiny_dataset_few_steps_trains(tmp_path):
    """faces at batch 64: two steps an epoch; OneCycle's phases must still each get a step."""
    result = optik.train(data="faces", model="cnn-small", epochs=2, batch_size=64, out=tmp_path / "tiny",
                         progress=False)
    assert result.metrics["n"] == 40
    one = optik.train(data="faces", model="cnn-small", epochs=1, batch_size=200, out=tmp_path / "one",
                      progress=False)
    assert one.metrics["n"] == 40
