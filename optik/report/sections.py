"""The sections of a run's report. Each reads what the run folder holds and returns a Section, or None when the
run has nothing for it (no attacks run, not binary, ...). Figures already in the run folder are embedded as they
are; the others (training curves, filters, Grad-CAM, augmentation preview) are drawn here."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from optik.core.io import read_json
from optik.evaluation.bootstrap import format_interval
from optik.report.page import Section, figure_png

log = logging.getLogger("optik")


def _f(v, fmt: str = ".4f") -> str:
    return "-" if v is None else format(v, fmt)


# ------------------------------------------------------------------------------------------------ data
def data(saved: dict) -> Section | None:
    """What the run trained and was tested on, as its config.yaml recorded it (sizes, splits; for a manifest, its
    SHA-256 and how many images lie outside its folder)."""
    d = saved.get("data")
    if not isinstance(d, dict):
        return None
    rows = [("data", str(d.get("name"))), ("images", str(d.get("n"))),
            ("classes", f"{len(d.get('classes', []))}: {', '.join(map(str, d.get('classes', [])[:20]))}"
                        + (" ..." if len(d.get("classes", [])) > 20 else "")),
            ("image size", f"{d.get('channels')} x {' x '.join(map(str, d.get('image_size', [])))}"),
            ("splits", ", ".join(f"{k} {v}" for k, v in d.get("splits", {}).items()))]
    if "manifest_sha256" in d:
        rows += [("manifest SHA-256", d["manifest_sha256"]),
                 ("images outside the manifest's folder", str(d.get("outside_manifest_folder", 0)))]
    return Section("Data", "data").table(("item", "value"), rows, caption="as recorded in config.yaml when the run started")


# ------------------------------------------------------------------------------------------------ training
def scalar_history(tensorboard_dir: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Every scalar TensorBoard holds for a run: tag -> (steps, values), read by TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not tensorboard_dir.is_dir():
        return {}
    acc = EventAccumulator(str(tensorboard_dir), size_guidance={"scalars": 0, "images": 1, "tensors": 1})
    acc.Reload()
    out = {}
    for tag in acc.Tags()["scalars"]:
        events = acc.Scalars(tag)
        out[tag] = (np.array([e.step for e in events]), np.array([e.value for e in events]))
    return out


def training_curves(run: Path, title: str = "Training") -> Section | None:
    """Losses and validation metrics against the optimizer step, one panel per group of tags."""
    import matplotlib.pyplot as plt

    history = {k: v for k, v in scalar_history(run / "tensorboard").items() if k != "epoch"}
    if not history:
        return None
    groups: dict[str, list[str]] = {}
    for tag in sorted(history):
        kind = "learning rate" if tag.startswith("lr") else "loss" if "loss" in tag or "elbo" in tag else "metric"
        groups.setdefault(kind, []).append(tag)
    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 3.6), squeeze=False,
                             constrained_layout=True)
    for ax, (kind, tags) in zip(axes[0], groups.items()):
        for tag in tags[:8]:
            steps, values = history[tag]
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, ms=3, label=tag)
        ax.set(xlabel="optimizer step", title=kind)
        ax.legend(fontsize=7)
    final = [(tag, f"{history[tag][1][-1]:.4g}", int(history[tag][0][-1])) for tag in sorted(history)
             if not tag.startswith("lr")]
    return (Section(title, "training").image(figure_png(fig), alt="training curves",
                                             caption="scalars logged to TensorBoard during training")
            .table(("scalar", "last value", "at step"), final))


# ------------------------------------------------------------------------------------------------ evaluation
def evaluation(run: Path, m: dict) -> Section:
    """Accuracy with its interval, the confusion matrix and the per-class table."""
    s = Section(f"Evaluation ({m.get('split', 'test')} split, {m['n']} images)", "evaluation")
    ci = m.get("intervals", {})
    topk = ", ".join(f"top-{k} {v:.4f}" for k, v in m.get("top_k_accuracy", {}).items())
    s.html(f"<p><b>accuracy {m['accuracy']:.4f}</b> {format_interval(ci.get('accuracy'))} &nbsp; balanced accuracy "
           f"{m['balanced_accuracy']:.4f} &nbsp; {topk} &nbsp; type I errors (FP) {m['type_i_errors']}, "
           f"type II errors (FN) {m['type_ii_errors']}</p>")
    if ci:
        s.text(f"Intervals: {ci['level']:.0%} {ci['method']}, {ci['n_boot']} resamples, seed {ci['seed']}.",
               cls="muted")
    s.warnings(m.get("flags", []))
    if (run / "figures" / "confusion_matrix.png").is_file():
        s.image(run / "figures" / "confusion_matrix.png", alt="confusion matrix", caption="rows: true class")
    per = ci.get("per_class", {})
    rows = []
    for name, r in m["per_class"].items():
        c = per.get(name, {})
        rows.append((name, r["support"], r["tp"], r["fp"], r["tn"], r["fn"],
                     *(f"{r[k]:.3f} {format_interval(c.get(k))}".strip()
                       for k in ("sensitivity", "specificity", "precision", "npv")), f"{r['f1']:.3f}"))
    for avg in ("macro", "weighted"):
        rows.append((avg, "", "", "", "", "", *(f"{m[avg][k]:.3f}" for k in ("sensitivity", "specificity",
                                                                            "precision", "npv", "f1"))))
    return s.table(("class", "n", "TP", "FP", "TN", "FN", "sensitivity", "specificity", "PPV", "NPV", "F1"), rows,
                   caption="one class against the rest; intervals in brackets")


def binary(run: Path, m: dict) -> Section | None:
    """The operating point with intervals, ROC AUC, average precision and the curves."""
    b = m.get("binary")
    if not b:
        return None
    s = Section(f"Binary operating point (positive = {b['positive']})", "binary")
    target = "".join(f", chosen for {k} {v}" for k, v in b.get("target", {}).items())
    source = {"given": "", "val": " on the validation split"}.get(b.get("threshold_source", "given"),
                                                                  " on the evaluated split (optimistic)")
    s.text(f"threshold {b['threshold']:.4g} on P({b['positive']}){target}{source}")
    ci = b.get("intervals", {})
    s.table(("", "value", "95 % interval"),
            [(name, f"{b[k]:.4f}", format_interval(ci.get(k))) for k, name in
             (("sensitivity", "sensitivity (TPR)"), ("specificity", "specificity (TNR)"), ("precision", "PPV"),
              ("npv", "NPV"))] +
            [("type I errors (FP)", b["fp"], f"rate {b['fpr']:.4f}"), ("type II errors (FN)", b["fn"],
                                                                       f"rate {b['fnr']:.4f}")])
    if "roc_auc" in b:
        s.text(f"ROC AUC {b['roc_auc']:.4f}, average precision {b['average_precision']:.4f}, prevalence "
               f"{b['prevalence']:.3f}")
    if (run / "figures" / "roc_pr.png").is_file():
        s.image(run / "figures" / "roc_pr.png", alt="ROC and precision-recall curves")
    return s


def subgroups(run: Path, m: dict) -> Section | None:
    """The subgroup audit of ``optik evaluate --by``: per column, each group's rates with intervals, the gaps,
    the flags and the figure."""
    from optik.evaluation.subgroups import GROUP_TABLE, figure_name, group_rows, shown_classes

    sub = m.get("subgroups")
    if not sub:
        return None
    s = Section("Subgroups", "subgroups").text(sub["note"])
    for column in sub["columns"]:
        report, shown = sub[column], shown_classes(sub, column)
        s.heading(f"by {column}")
        s.table(GROUP_TABLE, group_rows(sub, column))
        gaps = [(c, k, _f(report["gaps"][c][k]["difference"], ".3f"), report["gaps"][c][k]["highest"] or "-",
                 report["gaps"][c][k]["lowest"] or "-") for c in shown for k in ("sensitivity", "specificity", "ppv")]
        gaps += [(c, "equalized-odds difference", _f(report["gaps"][c]["equalized_odds_difference"], ".3f"), "", "")
                 for c in shown]
        s.table(("class", "gap in", "largest difference", "highest", "lowest"), gaps)
        s.warnings(report.get("flags", []))
        figure = run / "figures" / figure_name(column)
        if figure.is_file():
            s.image(figure, alt=f"sensitivity and specificity by {column}", caption="points: estimates; bars: 95 % "
                    "intervals")
    for column, needed in sub.get("thresholds_needed", {}).items():
        target = ", ".join(f"{k} {v:.3f}" for k, v in needed["target"].items())
        s.table(("group", "threshold needed", "sensitivity", "specificity"),
                [(g, _f(r.get("threshold"), ".4g"), _f(r.get("sensitivity"), ".3f"), _f(r.get("specificity"), ".3f"))
                 for g, r in needed["groups"].items()],
                caption=f"the threshold each {column} group would need to reach {target} (on the evaluated images)")
    return s


def probes(run: Path) -> Section | None:
    """Attribute probes (``optik probe``): can the model's features tell a patient attribute?"""
    files = sorted((run / "probes").glob("*.json"))
    if not files:
        return None
    s = Section("Attribute probes", "probes")
    rows, verdicts = [], []
    for f in files:
        p = read_json(f)
        rows.append((p["attribute"], ", ".join(map(str, p["values"])), p["n_train"], p["n_test"],
                     f"{p['features']['auc']:.3f} {format_interval(p['features'].get('interval'))}",
                     f"{p['pixels']['auc']:.3f} {format_interval(p['pixels'].get('interval'))}"))
        verdicts.append(p["verdict"])
    s.table(("attribute", "values", "train", "test", "AUC on the model's features", "AUC on raw pixels"), rows,
            caption="a linear probe fitted on the training split, AUC on the test split (chance: 0.5)")
    for v in verdicts:
        s.text(v)
    return s


def calibration(run: Path, m: dict) -> Section | None:
    c = m.get("calibration")
    if not c:
        return None
    before = c["before"]
    s = Section("Calibration", "calibration")
    s.text(f"ECE {before['ece']:.4f} ({before['n_bins']} bins), MCE {before['mce']:.4f}, NLL {before['nll']:.4f}, "
           f"Brier {before['brier']:.4f}. A confidence of p should be right a share p of the time; bars below the "
           "diagonal are overconfident.")
    if "after" in c:
        s.text(f"Temperature scaling, T = {c['temperature']:.4f} fitted on the {c['fitted_on']} split: ECE "
               f"{c['after']['ece']:.4f}, NLL {c['after']['nll']:.4f}.")
    if (run / "figures" / "reliability.png").is_file():
        s.image(run / "figures" / "reliability.png", alt="reliability diagram")
    return s


def mistakes(run: Path) -> Section | None:
    path = run / "figures" / "mistakes.png"
    if not path.is_file():
        return None
    return Section("Most confident mistakes", "mistakes").image(
        path, alt="most confident mistakes", caption="misclassified test images, most confident first")


# ------------------------------------------------------------------------------------------------ model
def interpretability(model, images, labels) -> Section | None:
    """First-layer filters and Grad-CAM on a few test images (one per class first)."""
    from optik.interpret.examples import explain_examples, filters_figure

    s = Section("What the model looks at", "interpretability")
    try:
        s.image(figure_png(filters_figure(model)), alt="first-layer filters",
                caption="first-layer filters, each scaled to its own range")
    except Exception as e:  # a model without a convolution: say so, keep the rest of the report
        s.text(f"no first-layer filters to show: {e}", cls="muted")
    try:
        s.image(figure_png(explain_examples(model, images, labels, n=8)), alt="Grad-CAM examples",
                caption="Grad-CAM (Selvaraju et al. 2017) for the predicted class on test images")
    except Exception as e:
        s.text(f"no Grad-CAM examples: {e}", cls="muted")
    return s


def augmentation(config: dict, image) -> Section | None:
    """The training augmentation: each knob on one training image, then random draws of the settings used."""
    from optik.augment.preview import preview_figure
    from optik.augment.presets import KNOBS, make_augment

    aug = make_augment(config.get("augment", "none"), **{k: config[k] for k in KNOBS if k in config})
    s = Section("Augmentation", "augmentation")
    if aug is None:
        return s.text(f"augment = {config.get('augment')!r}: training images were used as they are.")
    x = image[None].float().div(255)
    s.text(f"augment = {config.get('augment')!r}; the last row draws from the settings this run trained with.")
    return s.image(figure_png(preview_figure(x, aug, title="augmentation preview (a training image)"), dpi=70),
                   alt="augmentation preview")


def robustness(run: Path) -> Section | None:
    """Every attack run on this model: accuracy against eps, and the gallery of adversarial examples."""
    reports = sorted((run / "attacks").glob("*/robustness.json"))
    if not reports:
        return None
    s = Section("Robustness", "robustness")
    for path in reports:
        r = read_json(path)
        s.heading(f"{r['method']} ({r['norm']}), {r['n']} {r.get('split', '')} images, clean accuracy "
                  f"{r['clean_accuracy']:.4f}")
        if "minimal" in r:  # a minimal-perturbation attack: what it found, then the curve over L2 thresholds
            m = r["minimal"]
            s.text(f"Minimal perturbation, unbounded: fooled {_f(m['attack_success_rate'])} of the correctly "
                   f"classified images; L2 of the perturbations: mean {_f(m['l2_mean'], '.3f')}, median "
                   f"{_f(m['l2_median'], '.3f')}. The table counts an image as broken at eps when its perturbation "
                   f"has L2 <= eps.")
        for note in r.get("notes", []):
            s.text(f"Note: {note}")
        s.table(("eps", "robust accuracy", "attack success", "L2 mean", "Linf mean"),
                [(f"{p['eps']:g}", f"{p['robust_accuracy']:.4f}", _f(p["attack_success_rate"]),
                  _f(p["l2_mean"], ".3f"), _f(p["linf_mean"], ".3f")) for p in r["per_eps"]])
        s.warnings(r.get("flags", []))
        for name, alt in (("robustness.png", "robust accuracy against eps"), ("gallery.png", "adversarial examples")):
            if (path.parent / name).is_file():
                s.image(path.parent / name, alt=f"{r['method']}: {alt}")
    return s


# ------------------------------------------------------------------------------------------------ generative
def generative(run: Path, m: dict, *, kind: str, anchor: str = "generative") -> Section:
    """Sample quality, the FID history, samples, interpolations (and reconstructions for a VAE)."""
    import matplotlib.pyplot as plt

    s = Section(f"Generative model: {kind.upper()} ({run.name})", anchor)
    q = m.get("test", {})
    rows = [("FID", _f(q.get("fid"), ".3f"), f"floor (real train vs test): {_f(m.get('fid_floor_train_vs_test'), '.3f')}"),
            ("KID", f"{_f(q.get('kid_mean'), '.5f')} ± {_f(q.get('kid_std'), '.5f')}", ""),
            ("precision / recall", f"{_f(q.get('precision'), '.3f')} / {_f(q.get('recall'), '.3f')}", "")]
    hist = q.get("class_histogram")
    if hist:
        rows.append(("classes under 5 %", hist.get("num_missing", 0), ", ".join(map(str, hist.get("missing", [])))))
    other = m.get("test_prior_codes")
    if other:
        rows[0] = (rows[0][0], rows[0][1], rows[0][2] + "; codes from the latent mixture fitted after training "
                   f"(from the model's prior: FID {_f(other.get('fid'), '.3f')})")
    if "test_neg_elbo" in m:
        e = m["test_neg_elbo"]
        rows.append(("test -ELBO (nats)", f"{e['neg_elbo']:.2f}", f"NLL {e['nll']:.2f} + KL {e['kl']:.2f}"))
    s.table(("measure", "value", "note"), rows, caption=f"{m.get('n_test', '')} samples against as many test images")
    history = m.get("quality_history") or []
    if len(history) > 1:
        fig, ax = plt.subplots(figsize=(5, 3), constrained_layout=True)
        ax.plot([h["epoch"] for h in history], [h["fid"] for h in history], "o-")
        ax.set(xlabel="epoch", ylabel="FID", title="FID during training", yscale="log")
        s.image(figure_png(fig), alt="FID history")
    for name, caption in (("samples.png", "samples"), ("interpolation.png", "latent interpolations"),
                          ("reconstructions.png", "test images (top) and their reconstructions")):
        if (run / "figures" / name).is_file():
            s.image(run / "figures" / name, alt=f"{kind} {caption}", caption=caption)
    return s
