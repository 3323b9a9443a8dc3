"""``optik serve``: a local web playground over trained classification runs (Gradio).

Pick or upload an image, see the top-k probabilities, attack it (FGSM / PGD / C&W), turn the augmentation
knobs, and see its Grad-CAM heat map. The computations are plain functions in :mod:`optik.serve.logic`, upload
checks in :mod:`optik.serve.uploads`, the page in :mod:`optik.serve.app`.

Gradio is imported on first use (by :func:`serve`, or ``build_app`` from here): it takes seconds to import and is
an optional extra (``pip install 'optik[serve]'``). :func:`serve` is defined here so that its signature, which the
command lines read their flags from, is known without it.
"""
from __future__ import annotations

import os
from typing import Any, Sequence

from optik.serve.uploads import MAX_UPLOAD_MB

__all__ = ["build_app", "serve"]


def serve(runs: Sequence[str | os.PathLike], *, host: str = "127.0.0.1", port: int = 7860, open_browser: bool = False,
          max_upload_mb: float = MAX_UPLOAD_MB, top_k: int = 5) -> None:
    """Serve the playground over ``runs`` until interrupted (Ctrl-C).

    Args:
        runs: classification run folders (``optik train`` output).
        host: the interface to bind; the default serves this machine only. ``0.0.0.0`` exposes it to the network
            (there is no login: anyone who reaches it can use the models).
        port: the TCP port.
        open_browser: open the page in the default browser.
        max_upload_mb: the largest upload accepted, in MB (10^6 bytes); Gradio stops receiving larger files.
        top_k: classes shown with their probabilities.
    """
    from optik.serve.app import launch  # without Gradio: a ConfigError saying how to install it

    launch(runs, host=host, port=port, open_browser=open_browser, max_upload_mb=max_upload_mb, top_k=top_k)


def __getattr__(name: str) -> Any:
    if name == "build_app":
        from optik.serve import app

        return app.build_app
    raise AttributeError(f"module 'optik.serve' has no attribute {name!r}")
