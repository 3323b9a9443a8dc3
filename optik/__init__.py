"""optik: a computer-vision toolkit on PyTorch -- classify and evaluate, transfer, attack and defend, generate.

The contract between modules: images are float32 ``N x C x H x W`` tensors in [0, 1]; a model is a
:class:`~optik.models.Classifier` that owns its normalization and returns logits.
"""
from optik.core.version import __version__  # noqa: E402  (core: run provenance reads it below the API)
from optik.api import (TrainResult, attack, evaluate, load, make_config, predict, prepare, probe,  # noqa: E402
                       run_info, train)
from optik.training.config import TrainConfig  # noqa: E402
from optik.core.errors import OptikError  # noqa: E402
from optik.data import list_datasets, load_dataset  # noqa: E402
from optik.models import Classifier, list_models  # noqa: E402
from optik.interpret_api import explain  # noqa: E402
from optik.report import write_report as report  # noqa: E402
from optik.runs import Run  # noqa: E402
from optik.generative_api import (interpolate, load_generator, quality, sample, train_gan,  # noqa: E402
                                  train_vae)

__all__ = ["Classifier", "attack", "OptikError", "TrainConfig", "TrainResult", "__version__", "evaluate", "list_datasets",
           "list_models", "load", "load_dataset", "make_config", "predict", "prepare", "probe", "run_info", "train", "Run",
           "explain", "report", "interpolate", "load_generator", "quality", "sample", "train_gan", "train_vae"]
