import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _no_network_datasets(tmp_path, monkeypatch):
    """Downloads land in a temporary cache, never in the user's."""
    monkeypatch.setenv("OPTIK_DATA", str(tmp_path / "optik-data"))
