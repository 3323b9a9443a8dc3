"""``optik serve``: a local web playground over trained classification runs (Gradio).

Pick or upload an image, see the top-k probabilities, attack it (FGSM / PGD / C&W), turn the augmentation
knobs, and see its Grad-CAM heat map. The computations are plain functions in :mod:`optik.serve.logic`, upload
checks in :mod:`optik.serve.uploads`, the page in :mod:`optik.serve.app`.

``serve`` and ``build_app`` are imported on first use: Gradio takes seconds to import and is an optional extra
(``pip install 'optik[serve]'``).
"""
from __future__ import annotations

from typing import Any

__all__ = ["build_app", "serve"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from optik.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'optik.serve' has no attribute {name!r}")
