"""Sample-quality metrics for generative models: FID, KID, improved precision / recall, and class histograms.

Every metric compares two sets of features of the same extractor, in float64:

- FID, Frechet distance between Gaussians fitted to the two sets (Heusel et al. 2017,
  https://arxiv.org/abs/1706.08500);
- KID, unbiased MMD^2 with a cubic polynomial kernel, averaged over random subsets (Binkowski et al. 2018,
  https://arxiv.org/abs/1801.01401);
- improved precision and recall, k-nearest-neighbour manifolds of each set (Kynkaanniemi et al. 2019,
  https://arxiv.org/abs/1904.06991);
- the histogram of a classifier's predictions over generated images, which shows mode collapse directly.

The feature extractor is pluggable: any module mapping pixels ``N x C x H x W`` in [0, 1] to ``N x D``.
:class:`ClassifierFeatures` takes the penultimate layer of a trained optik Classifier (the natural choice for
MNIST-like data, where ImageNet features say little); :class:`InceptionFeatures` takes torchvision's
Inception-v3 pool features from a weights file the user provides. Numbers from different extractors, or from
torchvision's Inception and the TF "FID Inception" of the papers, are not comparable.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from optik.core import seed as random
from optik.core.errors import CheckpointError, DataError, expect
from optik.models.classifier import Classifier
from optik.models.features import ClassifierFeatures, extract_features  # moved there; re-exported here
from optik.models.features import frozen as _frozen
from optik.models.io import safe_torch_load

__all__ = ["ClassifierFeatures", "FeatureStats", "InceptionFeatures", "INCEPTION_FILE", "INCEPTION_URL",
           "class_histogram", "extract_features", "fid", "frechet_distance", "kid", "precision_recall",
           "sample_quality"]

INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"
INCEPTION_URL = f"https://download.pytorch.org/models/{INCEPTION_FILE}"
_CHUNK_ENTRIES = 1 << 24  # distance-matrix entries per chunk in precision_recall (128 MiB of float64)


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise CheckpointError(f"cannot read {path} as safetensors ({e})") from None
    state = safe_torch_load(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"expected {path} to hold a state dict (names -> tensors), got {type(state).__name__}")
    return state


class InceptionFeatures(nn.Module):
    """torchvision's Inception-v3 2048-d pool features, from a weights file the user downloaded.

    Not the FID Inception: torchvision's ImageNet weights (``inception_v3_google-0cc3c7bd.pth``) are not the
    TF graph ``pt_inception-2015-12-05`` that published FIDs use (torch-fidelity / pytorch-fid, and torchmetrics'
    ``feature=2048``), and the resizing differs too, so FID and KID computed with this extractor are **not
    comparable to the numbers in papers** -- only to each other.

    The images are resized bilinearly to 299 x 299 (antialiased when shrinking), grayscale is repeated to 3
    channels, and pixels are mapped to [-1, 1], which is what torchvision's ``transform_input=True`` does to
    ImageNet-normalized input for these weights. The network runs in eval mode without gradients. optik never
    downloads the weights: get them from :data:`INCEPTION_URL`.

    Args:
        weights_path: the ``.pth`` file (loaded with ``weights_only=True``) or a ``.safetensors`` conversion.

    Shape:
        input ``N x 1 x H x W`` or ``N x 3 x H x W`` float in [0, 1]; output ``N x 2048`` float32, >= 0.
    """

    num_features = 2048

    def __init__(self, weights_path: str | os.PathLike):
        super().__init__()
        from torchvision.models import inception_v3

        path = Path(weights_path)
        if not path.is_file():
            raise CheckpointError(
                f"expected torchvision's Inception-v3 weights ({INCEPTION_FILE}) at {str(path)!r}, which does not "
                f"exist. optik never downloads them itself: fetch {INCEPTION_URL} (e.g. `curl -LO {INCEPTION_URL}`) "
                f"and pass the file's path")
        net = inception_v3(weights=None, aux_logits=True, init_weights=False, transform_input=False)
        net.AuxLogits, net.aux_logits, net.fc = None, False, nn.Identity()  # unused: drop their weights
        state = {k: v for k, v in _load_state(path).items() if not k.startswith(("AuxLogits.", "fc."))}
        try:
            missing, unexpected = net.load_state_dict(state, strict=False)
        except RuntimeError as e:  # a tensor of the wrong shape
            raise CheckpointError(f"{path} does not fit torchvision's Inception-v3 ({str(e).splitlines()[-1]}); "
                                  f"expected {INCEPTION_FILE} from {INCEPTION_URL}") from None
        if missing or unexpected:
            raise CheckpointError(
                f"expected torchvision's Inception-v3 weights ({INCEPTION_FILE}) in {path}, got a file with "
                f"{len(missing)} missing tensors (e.g. {missing[:3]}) and {len(unexpected)} unexpected ones "
                f"(e.g. {unexpected[:3]}); download {INCEPTION_URL}")
        self.net = net.to(memory_format=torch.channels_last)  # oneDNN / cuDNN prefer it; same values

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expect(x.ndim == 4 and x.shape[1] in (1, 3), "images N x 1 x H x W or N x 3 x H x W", tuple(x.shape),
               error=DataError)
        x = x.expand(-1, 3, -1, -1)
        if tuple(x.shape[-2:]) != (299, 299):
            shrink = x.shape[-2] > 299 or x.shape[-1] > 299
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False, antialias=shrink)
        with _frozen(self.net):
            return self.net((x * 2 - 1).contiguous(memory_format=torch.channels_last))


def _as_features(f: Any, name: str) -> torch.Tensor:
    f = torch.as_tensor(np.asarray(f) if not isinstance(f, torch.Tensor) else f).detach()
    expect(f.ndim == 2 and len(f) >= 2, f"{name} as an N x D array with N >= 2", tuple(f.shape), error=DataError)
    return f.to("cpu", torch.float64)


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    expect(a.shape[1] == b.shape[1], "two feature sets of the same dimension",
           f"{a.shape[1]} and {b.shape[1]}", "use one extractor for both sets", error=DataError)


@dataclass(frozen=True, eq=False)
class FeatureStats:
    """Mean and covariance of a feature set, float64: all FID needs (so a reference set is summarized once).

    Attributes:
        mean: ``D``; cov: ``D x D`` unbiased (divided by ``n - 1``); n: number of samples.
    """

    mean: torch.Tensor
    cov: torch.Tensor
    n: int

    @classmethod
    def from_features(cls, features: Any) -> "FeatureStats":
        """Statistics of ``N x D`` features (tensor or array, ``N >= 2``)."""
        f = _as_features(features, "features")
        mean = f.mean(0)
        centred = f - mean
        return cls(mean=mean, cov=centred.T @ centred / (len(f) - 1), n=len(f))

    @property
    def dim(self) -> int:
        return self.mean.numel()


def _sqrt_psd(a: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a positive semi-definite matrix (negative round-off eigenvalues -> 0)."""
    w, v = torch.linalg.eigh((a + a.T) / 2)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def _warn_if_few(n_a: int, n_b: int, dim: int) -> None:
    if min(n_a, n_b) < dim:
        warnings.warn(
            f"FID from {n_a} and {n_b} samples of {dim}-dimensional features: a set with fewer samples than "
            f"dimensions has a singular covariance, and the FID is biased (too high); use at least {dim} samples "
            f"per set, preferably many more", UserWarning, stacklevel=3)


def frechet_distance(stats_a: FeatureStats, stats_b: FeatureStats) -> float:
    """Frechet distance between the Gaussians ``N(mu_a, A)`` and ``N(mu_b, B)``, in float64.

    ``||mu_a - mu_b||^2 + Tr(A) + Tr(B) - 2 Tr((A B)^(1/2))``, where ``Tr((A B)^(1/2))`` is computed as the sum of
    the square roots of the eigenvalues of the symmetric ``A^(1/2) B A^(1/2)`` (same spectrum as ``A B``;
    round-off negatives clamped to 0), which stays real and stable for singular covariances where ``sqrtm(A B)``
    needs an epsilon fallback. Warns (``UserWarning``) when a set has fewer samples than dimensions.
    """
    expect(stats_a.dim == stats_b.dim, "statistics of the same dimension", f"{stats_a.dim} and {stats_b.dim}",
           error=DataError)
    _warn_if_few(stats_a.n, stats_b.n, stats_a.dim)
    root_a = _sqrt_psd(stats_a.cov)
    middle = root_a @ stats_b.cov @ root_a
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp_min(0).sqrt().sum()
    diff = stats_a.mean - stats_b.mean
    return float(diff @ diff + stats_a.cov.trace() + stats_b.cov.trace() - 2 * tr_sqrt)


def fid(features_a: Any, features_b: Any) -> float:
    """Frechet distance between the Gaussian fits of two feature sets (FID with Inception features).

    Heusel et al. 2017, https://arxiv.org/abs/1706.08500. Biased for finite samples (it shrinks slowly as N
    grows), so compare FIDs only at equal sample sizes and with the same extractor.

    Shape:
        features_a ``N x D``, features_b ``M x D`` (tensor or array); returns a float >= 0 (up to round-off).
    """
    a, b = _as_features(features_a, "features_a"), _as_features(features_b, "features_b")
    _check_pair(a, b)
    return frechet_distance(FeatureStats.from_features(a), FeatureStats.from_features(b))


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor, *, degree: int, gamma: float, coef: float) -> torch.Tensor:
    """Unbiased MMD^2 of two equal-sized sets with the kernel ``(gamma x.y + coef)^degree``."""
    m = len(x)
    k_xx = (x @ x.T * gamma + coef) ** degree
    k_yy = (y @ y.T * gamma + coef) ** degree
    k_xy = (x @ y.T * gamma + coef) ** degree
    within = (k_xx.sum() - k_xx.diagonal().sum() + k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    return within - 2 * k_xy.sum() / m**2


def kid(features_a: Any, features_b: Any, *, subsets: int = 100, subset_size: int = 1000, degree: int = 3,
        gamma: float | None = None, coef: float = 1.0, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance: unbiased MMD^2 with a polynomial kernel, mean and std over random subsets.

    Binkowski et al. 2018, https://arxiv.org/abs/1801.01401; the kernel is ``(gamma x.y + coef)^degree``, by
    default ``(x.y / D + 1)^3``. Each subset draws ``subset_size`` samples without replacement from each set, as
    torchmetrics' ``KernelInceptionDistance`` does, and the std is the population std over subsets (torchmetrics'
    ``unbiased=False``). Deviation: ``subset_size`` is clipped to the smaller set instead of raising, so with
    small sets every subset is a permutation of the whole (smaller) set and the std only reflects the larger one.

    Args:
        subsets: number of random subsets; subset_size: samples per set in each subset (clipped, see above);
        degree, gamma, coef: the kernel (``gamma`` default ``1 / D``); seed: seeds the subset draws.

    Shape:
        features_a ``N x D``, features_b ``M x D``; returns ``(mean, std)`` floats (the mean can be slightly
        negative for two samples of one distribution: the estimator is unbiased).
    """
    a, b = _as_features(features_a, "features_a"), _as_features(features_b, "features_b")
    _check_pair(a, b)
    expect(subsets >= 1 and subset_size >= 2, "subsets >= 1 and subset_size >= 2", (subsets, subset_size))
    m = min(subset_size, len(a), len(b))
    gamma = 1.0 / a.shape[1] if gamma is None else gamma
    g = torch.Generator().manual_seed(seed)
    scores = torch.stack([
        _mmd2_unbiased(a[random.randperm(len(a), generator=g, device=a.device)[:m]],
                       b[random.randperm(len(b), generator=g, device=b.device)[:m]],
                       degree=degree, gamma=gamma, coef=coef)
        for _ in range(subsets)])
    return float(scores.mean()), float(scores.std(unbiased=False))


def _chunks(n_rows: int, n_cols: int) -> Iterator[slice]:
    step = max(1, _CHUNK_ENTRIES // max(n_cols, 1))
    for start in range(0, n_rows, step):
        yield slice(start, start + step)


def _knn_radii(f: torch.Tensor, k: int) -> torch.Tensor:
    """Distance from each sample to its k-th nearest other sample of the same set."""
    # k + 1: each row's smallest distance is the sample itself (0), as in the authors' code
    return torch.cat([torch.cdist(f[rows], f).kthvalue(k + 1, dim=1).values for rows in _chunks(len(f), len(f))])


def _inside(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """Whether each query lies in some ball ``B(support_j, radii_j)``."""
    return torch.cat([(torch.cdist(queries[rows], support) <= radii).any(dim=1)
                      for rows in _chunks(len(queries), len(support))])


def precision_recall(real_features: Any, fake_features: Any, *, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall of generated samples: the share of each set inside the other's manifold.

    Kynkaanniemi et al. 2019, https://arxiv.org/abs/1904.06991. A set's manifold is the union of balls around
    its samples, each with the radius of that sample's k-th nearest neighbour in the set. Precision is the share
    of fake samples inside the real manifold (fidelity); recall the share of real samples inside the fake
    manifold (diversity). Distances are computed in chunks of rows, so memory stays at ``_CHUNK_ENTRIES``
    float64 entries (128 MiB) plus the features. The paper uses VGG-16 features and 50k samples; with another
    extractor or fewer samples the numbers are only comparable among themselves.

    Args:
        k: the neighbour that sets the radius (the paper's default 3); needs more than ``k`` samples per set.

    Shape:
        real_features ``N x D``, fake_features ``M x D``; returns ``(precision, recall)`` floats in [0, 1].
    """
    real, fake = _as_features(real_features, "real_features"), _as_features(fake_features, "fake_features")
    _check_pair(real, fake)
    expect(isinstance(k, int) and 1 <= k < min(len(real), len(fake)), "1 <= k < the size of each set",
           (k, len(real), len(fake)))
    precision = _inside(fake, real, _knn_radii(real, k)).double().mean()
    recall = _inside(real, fake, _knn_radii(fake, k)).double().mean()
    return float(precision), float(recall)


def class_histogram(classifier: Classifier, images: torch.Tensor, *, batch_size: int = 500,
                    min_fraction: float = 0.05) -> dict[str, Any]:
    """How a classifier labels a set of (generated) images: a collapsed generator leaves classes out.

    Args:
        classifier: a trained Classifier (its ``classes`` name the bins); runs in eval mode.
        images: the images to label; batch_size: images per forward pass.
        min_fraction: classes predicted for less than this share are listed as ``missing`` (5 % suits about
            10 balanced classes; lower it for many classes).

    Shape:
        images ``N x C x H x W``, ``uint8`` or float in [0, 1]. Returns ``{"n", "counts", "fractions",
        "min_fraction", "missing", "num_missing"}`` with counts and fractions keyed by class name.
    """
    logits = extract_features(classifier, images, batch_size=batch_size)
    counts = torch.bincount(logits.argmax(dim=1), minlength=classifier.num_classes).tolist()
    n = max(len(logits), 1)
    fractions = {name: c / n for name, c in zip(classifier.classes, counts)}
    missing = [name for name, share in fractions.items() if share < min_fraction]
    return {"n": len(logits), "counts": dict(zip(classifier.classes, counts)), "fractions": fractions,
            "min_fraction": min_fraction, "missing": missing, "num_missing": len(missing)}


def sample_quality(real_images: torch.Tensor, fake_images: torch.Tensor, *, extractor: nn.Module, k: int = 3,
                   kid_subsets: int = 100, kid_subset_size: int | None = None, classifier: Classifier | None = None,
                   batch_size: int = 500, seed: int = 0) -> dict[str, Any]:
    """FID, KID, precision and recall of ``fake_images`` against ``real_images``, as JSON-ready numbers.

    Args:
        extractor: the feature module (e.g. a :class:`ClassifierFeatures` whose scale was fitted on the real
            images, or :class:`InceptionFeatures`); the same one must be used for numbers that are compared.
        k: neighbours for precision / recall; kid_subsets, kid_subset_size, seed: see :func:`kid`. The default
            subset size is half the smaller set, at most 1,000: subsets as large as the sets would all hold the
            same images, and the reported standard deviation would be 0 by construction.
        classifier: if given, the histogram of its predictions on the fake images is added.
        batch_size: images per forward pass.

    Shape:
        real_images ``N x C x H x W`` and fake_images ``M x C x H x W``, ``uint8`` or float in [0, 1]. Returns
        ``{"fid", "kid_mean", "kid_std", "precision", "recall", "n_real", "n_fake", "feature_dim"}`` plus
        ``"class_histogram"`` (see :func:`class_histogram`) when a classifier is given; plain Python numbers.
    """
    real = extract_features(extractor, real_images, batch_size=batch_size)
    fake = extract_features(extractor, fake_images, batch_size=batch_size)
    size = kid_subset_size or max(2, min(1000, min(len(real), len(fake)) // 2))
    kid_mean, kid_std = kid(real, fake, subsets=kid_subsets, subset_size=size, seed=seed)
    precision, recall = precision_recall(real, fake, k=k)
    out = {"fid": fid(real, fake), "kid_mean": kid_mean, "kid_std": kid_std, "precision": precision,
           "recall": recall, "n_real": len(real), "n_fake": len(fake), "feature_dim": int(real.shape[1])}
    if classifier is not None:
        out["class_histogram"] = class_histogram(classifier, fake_images, batch_size=batch_size)
    return out
