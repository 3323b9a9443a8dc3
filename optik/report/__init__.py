"""`optik report RUN`: one self-contained HTML page of everything a run folder holds."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from optik.core.errors import RunError
from optik.core.io import atomic_write, read_json
from optik.report import sections
from optik.report.page import Section, render

log = logging.getLogger("optik")


def write_report(run: str | os.PathLike, *, out: str | os.PathLike | None = None, examples: int = 8) -> Path:
    """Write ``report.html`` for a classification or generative run folder and return its path.

    A classification run shows: training curves, the test evaluation (confusion matrix, per-class table with
    intervals), the binary operating point and curves when binary, calibration, the most confident mistakes,
    first-layer filters and Grad-CAM examples, the augmentation it trained with, and every attack run on it.
    A generative run shows its sample quality, samples and interpolations; generative runs kept inside a
    classification run (``optik demo`` keeps its VAE in ``vae/``) get their own sections.

    Args:
        run: the run folder.
        out: the HTML file (default ``<run>/report.html``).
        examples: test images shown with Grad-CAM.
    """
    from optik.runs import Run

    opened = Run.open(run, finished=False)
    run, saved = opened.path, opened.saved
    if opened.kind in ("gan", "vae"):
        parts, title = _generative_parts(run, saved), f"optik report: {opened.kind.upper()} {run.name}"
    else:
        parts, title = _classification_parts(run, saved, examples=examples), f"optik report: {run.name}"
    for child in sorted(p.parent for p in run.glob("*/config.yaml")):
        try:
            inner = Run.open(child, kind="generative", finished=False)
        except RunError:  # not a generative run kept inside this one
            continue
        if (child / "metrics.json").is_file():
            parts += _generative_parts(child, inner.saved, anchor=f"generative-{child.name}")
    config = saved.get("config", {})
    subtitle = [f"{run.resolve()}",
                f"data {config.get('data')}, model {config.get('model', config.get('kind', ''))}; created "
                f"{saved.get('created', '?')} with optik {saved.get('optik', '?')}, torch {saved.get('torch', '?')}"
                f"{', git ' + saved['git_sha'][:10] if saved.get('git_sha') else ''}"]
    html = render(title, subtitle, [p for p in parts if p is not None])
    path = Path(out) if out is not None else run / "report.html"
    atomic_write(path, lambda p: Path(p).write_text(html, encoding="utf-8"))
    return path


def _classification_parts(run: Path, saved: dict, *, examples: int) -> list[Section | None]:
    from optik.interpret.examples import pick_examples
    from optik.runs import Run

    if not (run / "metrics.json").is_file():
        raise RunError(f"{run} has no metrics.json: its training did not finish. Resume it with "
                       f"`optik train --resume {run}`, then run `optik report` again")
    metrics = read_json(run / "metrics.json")
    opened = Run.open(run, kind="classifier")
    model, data = opened.model(), opened.data()
    test = data.splits["test"]
    shown = pick_examples(test.labels, examples)  # only these test images are decoded
    return [sections.data(saved), sections.training_curves(run), sections.evaluation(run, metrics),
            sections.binary(run, metrics), sections.subgroups(run, metrics), sections.probes(run),
            sections.calibration(run, metrics), sections.mistakes(run),
            sections.interpretability(model, test.take(shown), test.labels[shown]),
            sections.augmentation(saved["config"], data.splits["train"].take([0])[0]), sections.robustness(run),
            _config_section(saved)]


def _generative_parts(run: Path, saved: dict, *, anchor: str = "generative") -> list[Section | None]:
    if not (run / "metrics.json").is_file():
        raise RunError(f"{run} has no metrics.json: its training did not finish. Resume it with "
                       f"`optik {saved['command']} --resume {run}`, then run `optik report` again")
    metrics = read_json(run / "metrics.json")
    curves = sections.training_curves(run, title=f"Training ({run.name})")
    if curves is not None:
        curves.anchor = f"{anchor}-training"
    return [sections.generative(run, metrics, kind=saved["command"].split()[0], anchor=anchor), curves]


def _config_section(saved: dict) -> Section:
    config = saved.get("config", {})
    return Section("Configuration", "config").table(("key", "value"), sorted((k, str(v)) for k, v in config.items()),
                                                    caption="the resolved config saved in config.yaml")
