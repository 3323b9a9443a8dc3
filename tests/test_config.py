"""Config schema: unknown keys and out-of-range values raise with what was expected; configs composed of sections
keep the flat keys, values and run folders of the flat config before them."""
import dataclasses
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from optik import TrainConfig, make_config
from optik.augment.presets import KNOBS, AugmentOptions
from optik.core.config import (ClusterConfig, DataConfig, HardwareConfig, data_options, from_dict,
                               resolve_config)
from optik.core.errors import ConfigError
from optik.models.config import ModelConfig
from optik.training.config import AdversarialConfig, GANConfig, OptimConfig, VAEConfig


def test_yaml_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epochs: 3\nlr: 0.05\ndata: digits\n")
    cfg = make_config(f, lr=0.2)
    assert (cfg.epochs, cfg.lr, cfg.data, cfg.batch_size) == (3, 0.2, "digits", TrainConfig().batch_size)


def test_unknown_key_suggests(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("epoch: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'epoch'.*Did you mean 'epochs'"):
        make_config(f)


@pytest.mark.parametrize("key,value,match", [
    ("epochs", 0, "epochs: expected an integer >= 1, got 0"),
    ("lr", -1.0, "lr: expected a learning rate > 0"),
    ("val_fraction", 1.5, r"val_fraction: expected a fraction in \[0, 1\)"),
    ("precision", "8", "precision: expected one of 32, bf16-mixed"),
    ("epochs", "three", "epochs.*expected an integer, got 'three'"),
    ("epochs", 2.5, "expected an integer"),
    ("lr", "inf", "lr.*expected a finite number, got 'inf'"),
    ("lr", float("nan"), "lr.*expected a finite number"),
    ("lr", 1e300, "lr: expected at most 10.*got 1e\\+300.*likely typo"),
    ("batch_size", 10**12, "batch_size: expected at most 1,048,576"),
    ("brightness_range", [float("nan"), 1.0], "brightness_range: expected a finite number"),
    ("width_shift_range", "nan", "width_shift_range.*expected a number"),
])
def test_out_of_range(key, value, match):
    with pytest.raises(ConfigError, match=match):
        make_config({key: value})


def test_not_a_mapping(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        make_config(f)
    with pytest.raises(ConfigError, match="does not exist"):
        make_config(tmp_path / "none.yaml")


# ------------------------------------------------------------------------------------------------ sections
# Files written by optik before configs were composed of sections (commit b09d335):
# - train-run-config.yaml: the config.yaml of a real run, made by
#   optik.train(data='digits', model='conv(4,k=3) relu gap fc', epochs=2, out='/tmp/old-run', progress=False)
# - gan-defaults.yaml, vae-defaults.yaml: GANConfig().to_dict() and VAEConfig().to_dict(), written by write_yaml
OLD = Path(__file__).parent / "fixtures" / "config-b09d335"
# The bounds the flat config refused values beyond, by key, for every config that has the key
OLD_LIMITS = {"lr": 10.0, "d_lr": 10.0, "epochs": 100_000, "batch_size": 1 << 20, "attack_steps": 100_000,
              "weight_decay": 1.0, "image_size": 8192, "input_size": 8192, "trades_beta": 1e4, "devices": 4096,
              "num_nodes": 65_536, "max_minutes": 525_600, "latent_dim": 65_536, "width": 65_536, "hidden": 1 << 20}


def _old(name: str) -> dict:
    return yaml.safe_load((OLD / name).read_text())


@pytest.mark.parametrize("schema,name", [(TrainConfig, "train-run-config.yaml"), (GANConfig, "gan-defaults.yaml"),
                                         (VAEConfig, "vae-defaults.yaml")])
def test_to_dict_has_exactly_the_old_keys_and_reads_old_values_back(schema, name):
    old = _old(name)
    old = old["config"] if "command" in old else old
    assert set(schema().to_dict()) == set(old) == {f.name for f in dataclasses.fields(schema)}
    cfg = resolve_config(schema, OLD / name)
    assert cfg.to_dict() == old  # same values, nothing added, nothing lost
    assert from_dict(schema, cfg.to_dict()) == cfg  # and the new mapping reads back as the same config


def test_flat_keys_and_attributes_reach_every_section():
    cfg = make_config({"lr": 0.1, "rotation_range": 10, "image_size": 16, "devices": 2, "adversarial": "pgd",
                       "eps": 0.1, "freeze": "backbone", "model": "resnet18", "num_nodes": 2})
    assert (cfg.lr, cfg.rotation_range, cfg.image_size, cfg.devices, cfg.eps, cfg.freeze, cfg.num_nodes) == \
           (0.1, 10.0, 16, 2, 0.1, "backbone", 2)
    assert isinstance(cfg, (DataConfig, ModelConfig, OptimConfig, AugmentOptions, AdversarialConfig, ClusterConfig))
    assert cfg.adversarial_defaults == {"label_smoothing": 0.0, "augment": "none"}
    assert cfg.augmentation().rotation_range == 10  # the knob on top of the preset adversarial training picked
    gan = resolve_config(GANConfig, {"image_size": 16, "devices": 2, "d_lr": 1e-3})
    assert isinstance(gan, (DataConfig, HardwareConfig)) and not isinstance(gan, ClusterConfig)
    assert data_options(gan)["image_size"] == 16 and "train_per_class" not in data_options(gan)
    assert data_options(make_config({"train_per_class": 5, "classes": "1, 2"}))["classes"] == ["1", "2"]


def test_augment_knobs_are_the_op_knobs():
    """The section's knobs are AugmentConfig's but rescale and p, and every one converts and reaches the op."""
    from optik.augment.generator import AugmentConfig

    assert set(KNOBS) == {f.name for f in dataclasses.fields(AugmentConfig)} - {"rescale", "p"}
    cfg = make_config({"augment": "none", "zoom_range": "0.8,1.2", "width_shift_range": "2", "fill_mode": "wrap"})
    op = cfg.augmentation()
    assert (op.zoom_range, op.width_shift_range, op.fill_mode) == ([0.8, 1.2], 2, "wrap")


@pytest.mark.parametrize("schema", [TrainConfig, GANConfig, VAEConfig])
def test_every_old_bound_still_holds(schema):
    names = {f.name for f in dataclasses.fields(schema)}
    for key, bound in OLD_LIMITS.items():
        if key in names:
            with pytest.raises(ConfigError, match=f"{key}: expected at most"):
                resolve_config(schema, {key: bound * 2})


@pytest.mark.parametrize("schema,image_size", [(TrainConfig, 4), (GANConfig, 8), (VAEConfig, 8)])
def test_each_config_keeps_its_smallest_image_size(schema, image_size):
    assert resolve_config(schema, {"image_size": image_size}).image_size == image_size
    with pytest.raises(ConfigError, match=f"image_size: expected None or an integer >= {image_size}, got 3"):
        resolve_config(schema, {"image_size": 3})


def test_a_scalar_dicom_window_is_a_config_error_not_a_crash():
    with pytest.raises(ConfigError, match="dicom_window: expected center,width"):
        make_config({"dicom_window": 40})


def test_core_imports_nothing_above_core():
    import ast

    import optik.core

    for path in Path(optik.core.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert not name.startswith("optik.") or name.startswith("optik.core"), f"{path.name} imports {name}"


# ------------------------------------------------------------------------------------------------ old runs
class _Interrupted(Exception):
    pass


def test_a_run_made_before_sections_trains_again_resumes_and_evaluates(tmp_path, monkeypatch):
    """The old config.yaml trains a new run as a config, and a run folder holding it (training interrupted after
    its first epoch) resumes to the same weights as the uninterrupted run, and evaluates."""
    import optik
    from optik.training.callbacks import LastCheckpoint

    old_text = (OLD / "train-run-config.yaml").read_text()
    old = yaml.safe_load(old_text)["config"]
    whole = optik.train(config=OLD / "train-run-config.yaml", epochs=2, out=tmp_path / "whole", progress=False)
    assert yaml.safe_load((whole.run_dir / "config.yaml").read_text())["config"] == old

    write_epoch_end = LastCheckpoint.on_train_epoch_end

    def interrupt_after_first_epoch(self, trainer, task):
        write_epoch_end(self, trainer, task)
        raise _Interrupted("killed after the first epoch's checkpoint")

    run = tmp_path / "interrupted"
    with monkeypatch.context() as m:
        m.setattr(LastCheckpoint, "on_train_epoch_end", interrupt_after_first_epoch)
        with pytest.raises(_Interrupted):
            optik.train(config=OLD / "train-run-config.yaml", out=run, progress=False)
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "model.safetensors").exists()
    (run / "config.yaml").write_text(old_text)  # the run folder now holds the config.yaml old optik wrote
    assert optik.Run.open(run, finished=False).config == make_config(OLD / "train-run-config.yaml")

    resumed = optik.train(resume=run, progress=False)
    assert (run / "config.yaml").read_text() == old_text  # resuming leaves it as it was
    a, b = load_file(str(whole.run_dir / "model.safetensors")), load_file(str(run / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.metrics["confusion_matrix"] == whole.metrics["confusion_matrix"]
    report = optik.evaluate(run, n_boot=0)
    assert report["n"] == 359 and report["accuracy"] == pytest.approx(whole.metrics["accuracy"])
