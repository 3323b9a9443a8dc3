"""Config schema: unknown keys and out-of-range values raise with what was expected."""
import pytest

from optik import make_config
from optik.core.config import TrainConfig
from optik.core.errors import ConfigError


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
