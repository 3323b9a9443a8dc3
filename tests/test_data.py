"""Datasets: built-ins, folder trees in every format, manifests, splits, bad input."""
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from optik.core.errors import ConfigError, DataError, OfflineError
from optik.data import (SkippedImagesWarning, TensorBatches, decode_image, list_datasets, load_dataset,
                        split_dataset, stratified_split)


def test_builtins_are_real_and_offline():
    ds = load_dataset("mnist5k")
    assert ds.images.shape == (5000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert ds.images.max() == 255 and torch.bincount(ds.labels).min() >= 400
    d = load_dataset("digits")
    assert d.images.shape == (1797, 1, 8, 8) and d.images.max() == 255
    f = load_dataset("faces")
    assert f.images.shape == (200, 1, 25, 25) and f.classes == ["non-face", "face"]
    assert torch.bincount(f.labels).tolist() == [100, 100]
    names = {d["name"] for d in list_datasets()}
    assert {"mnist5k", "digits", "faces", "mnist", "fashion-mnist", "cifar10", "cifar100", "svhn"} <= names


def test_mnist5k_test_split_is_fixed_and_stratified():
    ds = load_dataset("mnist5k")
    a = split_dataset(ds, val_fraction=0.1, test_fraction=0.2, seed=0)
    b = split_dataset(ds, val_fraction=0.3, test_fraction=0.5, seed=0)
    assert len(a["test"]) == 1000 and torch.equal(a["test"], b["test"])
    assert len(a["val"]) == 400 and len(a["train"]) == 3600
    all_idx = torch.cat([a["train"], a["val"], a["test"]])
    assert len(set(all_idx.tolist())) == 5000
    share = torch.bincount(ds.labels[a["test"]], minlength=10) / 1000
    overall = torch.bincount(ds.labels, minlength=10) / 5000
    assert (share - overall).abs().max() < 0.002  # stratified: proportions kept to rounding


def test_stratified_split_seeded():
    y = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)
    s1 = stratified_split(y, {"test": 0.2, "train": 1.0}, seed=1)
    s2 = stratified_split(y, {"test": 0.2, "train": 1.0}, seed=1)
    s3 = stratified_split(y, {"test": 0.2, "train": 1.0}, seed=2)
    assert torch.equal(s1["test"], s2["test"]) and not torch.equal(s1["test"], s3["test"])
    assert torch.bincount(y[s1["test"]]).tolist() == [10, 6, 4]


def test_download_offline_is_one_clear_error(monkeypatch):
    import urllib.request

    def refuse(*a, **k):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(urllib.request.OpenerDirector, "open", refuse)
    with pytest.raises(OfflineError, match="could not download 'cifar10'.*built-in dataset"):
        load_dataset("cifar10")


def test_unknown_dataset_suggests():
    with pytest.raises(ConfigError, match="did you mean 'mnist5k'|Did you mean 'mnist5k'"):
        load_dataset("mnist5")


def _write(path, array, fmt=None, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path, format=fmt)


def make_tree(root, rng):
    """Two classes in every format: grey PNG, RGB JPEG, BMP, TIFF, WebP, RGBA PNG, 16-bit PNG."""
    for label in ("cat", "dog"):
        d = root / label
        _write(d / "grey.png", rng.integers(0, 256, (12, 12), dtype=np.uint8))
        _write(d / "rgb.jpg", rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
        _write(d / "rgb.bmp", rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
        _write(d / "rgb.tif", rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
        _write(d / "rgb.webp", rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), fmt="WEBP")
        _write(d / "rgba.png", rng.integers(0, 256, (12, 12, 4), dtype=np.uint8))
        Image.fromarray(rng.integers(0, 65536, (12, 12)).astype(np.uint16)).save(d / "deep.png")


def test_folder_every_format(tmp_path):
    rng = np.random.default_rng(0)
    make_tree(tmp_path, rng)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may be skipped
        ds = load_dataset(str(tmp_path))
    assert ds.classes == ["cat", "dog"] and len(ds) == 14 and ds.images.shape[1:] == (3, 12, 12)
    assert torch.bincount(ds.labels).tolist() == [7, 7]


def test_decode_values(tmp_path):
    a16 = np.array([[0, 257, 65535, 1000]], dtype=np.uint16)
    Image.fromarray(a16).save(tmp_path / "d.png")
    np.testing.assert_array_equal(decode_image(tmp_path / "d.png"), np.round(a16 / 257).astype(np.uint8))
    rgba = np.random.default_rng(1).integers(0, 256, (5, 5, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(decode_image(tmp_path / "a.png"), rgba[..., :3])  # alpha dropped


def test_resize_to_image_size(tmp_path):
    rng = np.random.default_rng(0)
    _write(tmp_path / "a" / "1.png", rng.integers(0, 256, (20, 30), dtype=np.uint8))
    _write(tmp_path / "b" / "1.png", rng.integers(0, 256, (10, 10), dtype=np.uint8))
    ds = load_dataset(str(tmp_path), image_size=16)
    assert ds.images.shape == (2, 1, 16, 16)


def test_corrupt_truncated_and_non_image_files(tmp_path):
    rng = np.random.default_rng(0)
    make_tree(tmp_path, rng)
    good = (tmp_path / "cat" / "grey.png").read_bytes()
    (tmp_path / "cat" / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "dog" / "garbage.jpg").write_bytes(b"this is not a jpeg")
    (tmp_path / "dog" / "notes.txt").write_text("labels were checked twice")
    with pytest.warns(SkippedImagesWarning) as record:
        ds = load_dataset(str(tmp_path))
    message = str(record[0].message)
    assert "truncated.png" in message and "garbage.jpg" in message and "notes.txt" in message
    assert len(ds) == 14  # every good image kept
    with pytest.raises(DataError, match="truncated.png"):
        load_dataset(str(tmp_path), strict=True)


def test_empty_class_and_single_class(tmp_path):
    rng = np.random.default_rng(0)
    _write(tmp_path / "only" / "1.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    with pytest.raises(DataError, match="at least 2 class folders"):
        load_dataset(str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="'empty'.*no readable images"):
        load_dataset(str(tmp_path))


def test_missing_path_and_bad_manifest(tmp_path):
    with pytest.raises(DataError, match="which does not exist"):
        load_dataset(str(tmp_path / "nope"))
    (tmp_path / "m.csv").write_text("file,class\na.png,x\n")
    with pytest.raises(DataError, match="path,label"):
        load_dataset(str(tmp_path / "m.csv"))


def test_manifest(tmp_path):
    rng = np.random.default_rng(0)
    rows = ["path,label"]
    for i in range(6):
        _write(tmp_path / "img" / f"{i}.png", rng.integers(0, 256, (9, 9), dtype=np.uint8))
        rows.append(f"img/{i}.png,{'benign' if i % 2 else 'malignant'}")
    rows.append("img/missing.png,benign")
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    with pytest.warns(SkippedImagesWarning, match="missing.png"):
        ds = load_dataset(str(tmp_path / "m.csv"))
    assert ds.classes == ["benign", "malignant"] and len(ds) == 6


def test_predefined_split_folders(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("test", 2)):
        for label in ("normal", "pneumonia"):
            for i in range(n):
                _write(tmp_path / split / label / f"{i}.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    ds = load_dataset(str(tmp_path))
    splits = split_dataset(ds, val_fraction=0.25, test_fraction=0.2, seed=0)
    assert len(splits["test"]) == 4 and len(splits["train"]) + len(splits["val"]) == 12
    assert ds.classes == ["normal", "pneumonia"]


def test_batches_shard_disjointly_and_reshuffle():
    x = torch.arange(103, dtype=torch.uint8).view(-1, 1, 1, 1)
    y = torch.arange(103)
    shards = [TensorBatches(x, y, batch_size=8, shuffle=True, drop_last=True, seed=3, rank=r, world_size=2)
              for r in range(2)]
    seen = [torch.cat([b[1] for b in s]) for s in shards]
    assert len(shards[0]) == len(shards[1]) == 6
    assert not set(seen[0].tolist()) & set(seen[1].tolist())
    first = seen[0].clone()
    shards[0].set_epoch(1)
    assert not torch.equal(first, torch.cat([b[1] for b in shards[0]]))
    xb, _ = next(iter(TensorBatches(x, y, batch_size=4)))
    assert xb.dtype == torch.float32 and xb.max() <= 1 and torch.equal(xb.flatten() * 255, torch.arange(4.0))


def test_class_selection_keeps_each_images_split_and_few_shot_is_per_class():
    from optik.data import load_dataset, split_dataset
    from optik.data.splits import limit_per_class, select_classes

    ds = load_dataset("mnist5k")
    splits = split_dataset(ds, val_fraction=0.1, test_fraction=0.2, seed=0)
    sub, sub_splits = select_classes(ds, splits, ["7", "3"])
    assert sub.classes == ["7", "3"] and set(sub.labels.tolist()) == {0, 1}
    for name, idx in splits.items():
        keep = idx[(ds.labels[idx] == 7) | (ds.labels[idx] == 3)]
        assert torch.equal(sub.images[sub_splits[name]], ds.images[keep])  # the same images, the same split
        assert torch.equal(sub.labels[sub_splits[name]], (ds.labels[keep] == 3).long())
    few = limit_per_class(sub.labels, sub_splits["train"], 20, seed=1)
    assert torch.bincount(sub.labels[few]).tolist() == [20, 20] and set(few.tolist()) <= set(sub_splits["train"].tolist())
    assert not torch.equal(few, limit_per_class(sub.labels, sub_splits["train"], 20, seed=2))
    with pytest.raises(DataError, match="unknown: x"):
        select_classes(ds, splits, ["3", "x"])
    with pytest.raises(DataError, match="at least 5000 training images"):
        limit_per_class(sub.labels, sub_splits["train"], 5000, seed=0)
