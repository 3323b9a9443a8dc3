"""Run a Classifier over images and compute its report."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from optik.data.batches import TensorBatches
from optik.evaluation.metrics import classification_report
from optik.models.classifier import Classifier


@torch.inference_mode()
def predict_proba(model: Classifier, images: torch.Tensor, *, batch_size: int = 512) -> np.ndarray:
    """Softmax probabilities ``N x K`` (float64) of ``uint8`` or ``[0, 1]`` images ``N x C x H x W``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for x, _ in TensorBatches(images, torch.zeros(len(images), dtype=torch.long), batch_size=batch_size):
            out.append(torch.softmax(model(x.to(device)).double(), dim=1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, model.num_classes))


def evaluate_model(model: Classifier, images: torch.Tensor, labels: torch.Tensor, *, positive: str | None = None,
                   threshold: float = 0.5, top_k: Sequence[int] = (1, 3, 5), batch_size: int = 512) -> dict:
    """The full classification report of ``model`` on ``images`` with true ``labels``."""
    probs = predict_proba(model, images, batch_size=batch_size)
    return classification_report(probs, labels.cpu().numpy(), model.classes, positive=positive,
                                 threshold=threshold, top_k=top_k)
