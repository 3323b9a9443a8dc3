import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` run where CUDA exists and are skipped, saying why, everywhere else."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="gpu test: torch sees no CUDA device on this machine (run it where one exists)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _no_network_datasets(tmp_path, monkeypatch):
    """Downloads land in a temporary cache, never in the user's."""
    monkeypatch.setenv("OPTIK_DATA", str(tmp_path / "optik-data"))


@pytest.fixture(scope="session")
def small_mnist_run(tmp_path_factory):
    """cnn-small trained for one epoch on mnist5k: a real, quick run folder shared by the tests that only read it
    (the playground, the browser test). Tests that add to a run folder copy it first."""
    import optik

    out = tmp_path_factory.mktemp("shared") / "mnist-small"
    optik.train(data="mnist5k", model="cnn-small", epochs=1, augment="none", out=out, progress=False)
    return out
